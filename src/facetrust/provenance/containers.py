"""Metadata blocks pulled out of image containers, without decoding pixels.

PNG text chunks (tEXt, zTXt, iTXt) and eXIf, JPEG APP1 (EXIF, XMP) and COM segments, WEBP
EXIF/XMP chunks; other formats through Pillow's lazy header reader. Every size is checked
before anything is decompressed or decoded; whatever breaks a limit or is malformed becomes a
note and the rest is still read.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass, field

from facetrust.provenance.types import ProvenanceLimits, shorten

__all__ = ["Blocks", "read_blocks"]

_XMP_JPEG = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_PNG_KEY = "XML:com.adobe.xmp"


@dataclass
class Blocks:
    """Raw metadata of one file: text chunks by key, EXIF blocks, XMP packets, comments."""

    texts: list[tuple[str, str]] = field(default_factory=list)
    exif: list[bytes] = field(default_factory=list)
    xmp: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_blocks(data: bytes, fmt: str | None, limits: ProvenanceLimits) -> Blocks:
    """The metadata blocks of an image whose Pillow format name is ``fmt``."""
    out = Blocks()
    try:
        if fmt == "PNG":
            _png(data, limits, out)
        elif fmt == "JPEG":
            _jpeg(data, limits, out)
        elif fmt == "WEBP":
            _webp(data, limits, out)
        elif fmt is not None:
            _pillow(data, fmt, limits, out)
    except (struct.error, IndexError, ValueError) as e:  # a malformed container: keep what we have
        out.notes.append(f"metadata: {fmt} structure is malformed ({shorten(str(e), 120)})")
    return out


def _too_big(what: str, size: int, limits: ProvenanceLimits) -> str:
    return f"metadata: {what} is {_size(size)}; skipped (limit {_size(limits.max_text_bytes)})"


def _size(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB" if n >= 1024**2 else f"{n / 1024:.0f} KiB"


# ---- PNG -------------------------------------------------------------------------------------


def _png(data: bytes, limits: ProvenanceLimits, out: Blocks) -> None:
    pos, n, blocks = 8, len(data), 0
    while pos + 8 <= n:
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        start, end = pos + 8, pos + 8 + length
        name = ctype.decode("latin-1")
        if end + 4 > n:
            if ctype != b"IEND":
                out.notes.append(f"metadata: PNG chunk '{shorten(name, 8)}' is truncated")
            return
        pos = end + 4  # skip the CRC
        if ctype == b"IEND":
            return
        if ctype not in (b"tEXt", b"zTXt", b"iTXt", b"eXIf"):
            continue
        blocks += 1
        if blocks > limits.max_blocks:
            out.notes.append(
                f"metadata: more than {limits.max_blocks} PNG metadata chunks; rest skipped"
            )
            return
        body = data[start:end]
        if ctype == b"eXIf":
            if length > limits.max_text_bytes:
                out.notes.append(_too_big("PNG eXIf chunk", length, limits))
            else:
                out.exif.append(body)
            continue
        key, _, rest = body.partition(b"\x00")
        key_s = shorten(key.decode("latin-1"), 80)
        text = _png_text(ctype, key_s, rest, limits, out)
        if text is None:
            continue
        if ctype == b"iTXt" and key_s == _XMP_PNG_KEY:
            out.xmp.append(text)
        else:
            out.texts.append((key_s, text))


def _png_text(
    ctype: bytes, key: str, rest: bytes, limits: ProvenanceLimits, out: Blocks
) -> str | None:
    what = f"PNG text chunk '{key}'"
    if ctype == b"tEXt":
        if len(rest) > limits.max_text_bytes:
            out.notes.append(_too_big(what, len(rest), limits))
            return None
        return rest.decode("latin-1")
    if ctype == b"zTXt":
        return _inflate(rest[1:], what, limits, out, "latin-1")
    # iTXt: flag, method, language\0, translated keyword\0, text
    if len(rest) < 2:
        out.notes.append(f"metadata: {what} is truncated")
        return None
    flag, tail = rest[0], rest[2:]
    _lang, _, tail = tail.partition(b"\x00")
    _trans, _, tail = tail.partition(b"\x00")
    if flag:
        return _inflate(tail, what, limits, out, "utf-8")
    if len(tail) > limits.max_text_bytes:
        out.notes.append(_too_big(what, len(tail), limits))
        return None
    return tail.decode("utf-8", errors="replace")


def _inflate(
    blob: bytes, what: str, limits: ProvenanceLimits, out: Blocks, encoding: str
) -> str | None:
    d = zlib.decompressobj()
    try:
        text = d.decompress(blob, limits.max_text_bytes + 1)
    except zlib.error:
        out.notes.append(f"metadata: {what} has corrupt compressed data")
        return None
    if len(text) > limits.max_text_bytes or d.unconsumed_tail:
        out.notes.append(f"metadata: {what} inflates past {_size(limits.max_text_bytes)}; skipped")
        return None
    return text.decode(encoding, errors="replace")


# ---- JPEG ------------------------------------------------------------------------------------


def _jpeg(data: bytes, limits: ProvenanceLimits, out: Blocks) -> None:
    pos, n, blocks = 2, len(data), 0
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            out.notes.append("metadata: JPEG segment marker missing; stopped reading")
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: metadata is before
            return
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        start, end = pos + 4, pos + 2 + length
        if length < 2 or end > n:
            out.notes.append(f"metadata: JPEG segment 0xFF{marker:02X} is truncated")
            return
        pos = end
        if marker not in (0xE1, 0xFE):
            continue
        blocks += 1
        if blocks > limits.max_blocks:
            out.notes.append(f"metadata: more than {limits.max_blocks} JPEG segments; rest skipped")
            return
        body = data[start:end]
        if marker == 0xFE:
            out.comments.append(body[: limits.max_text_bytes].decode("utf-8", errors="replace"))
        elif body.startswith(b"Exif\x00\x00"):
            out.exif.append(body)
        elif body.startswith(_XMP_JPEG):
            out.xmp.append(body[len(_XMP_JPEG) :].decode("utf-8", errors="replace"))


# ---- WEBP ------------------------------------------------------------------------------------


def _webp(data: bytes, limits: ProvenanceLimits, out: Blocks) -> None:
    pos, n, blocks = 12, len(data), 0
    while pos + 8 <= n:
        fourcc, size = struct.unpack("<4sI", data[pos : pos + 8])
        start, end = pos + 8, pos + 8 + size
        if end > n:
            out.notes.append(
                f"metadata: WEBP chunk '{shorten(fourcc.decode('latin-1'), 4)}' is truncated"
            )
            return
        pos = end + (size & 1)
        if fourcc not in (b"EXIF", b"XMP "):
            continue
        blocks += 1
        if blocks > limits.max_blocks:
            out.notes.append(f"metadata: more than {limits.max_blocks} WEBP chunks; rest skipped")
            return
        if size > limits.max_text_bytes:
            out.notes.append(_too_big(f"WEBP {fourcc.decode().strip()} chunk", size, limits))
            continue
        body = data[start:end]
        if fourcc == b"EXIF":
            out.exif.append(body)
        else:
            out.xmp.append(body.decode("utf-8", errors="replace"))


# ---- everything else (TIFF, GIF, BMP): Pillow reads only the header ---------------------------


def _pillow(data: bytes, fmt: str, limits: ProvenanceLimits, out: Blocks) -> None:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=[fmt]) as im:
                info = dict(im.info)
                exif = im.getexif()
                raw_exif = exif.tobytes() if len(exif) else b""
                xmp = info.get("xmp") or (im.tag_v2.get(700) if hasattr(im, "tag_v2") else None)
    except Exception as e:  # noqa: BLE001 - Pillow raises many types on hostile headers
        out.notes.append(f"metadata: cannot read the {fmt} header ({shorten(str(e), 120)})")
        return
    if raw_exif:
        out.exif.append(raw_exif[: limits.max_text_bytes])
    if isinstance(xmp, bytes | str):
        text = xmp.decode("utf-8", errors="replace") if isinstance(xmp, bytes) else xmp
        if len(text) > limits.max_text_bytes:
            out.notes.append(_too_big(f"{fmt} XMP packet", len(text), limits))
        else:
            out.xmp.append(text)
    comment = info.get("comment")
    if isinstance(comment, bytes | str):
        text = comment.decode("utf-8", errors="replace") if isinstance(comment, bytes) else comment
        out.comments.append(text[: limits.max_text_bytes])
