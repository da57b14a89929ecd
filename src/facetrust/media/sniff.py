"""Decide whether bytes hold an image or a video by their content (magic bytes), never the name."""

from __future__ import annotations

import os
import stat
from typing import BinaryIO, Literal

from facetrust.errors import (
    InputError,
    MediaError,
    one_line,
)

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "sniff_kind", "sniff_path"]

MediaKind = Literal["image", "video"]

#: Common image file extensions (lower case, with the dot). Used only to pick files from folders;
#: decoding always goes by content.
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif"}
)

#: Common video file extensions (lower case, with the dot). Used only to pick files from folders.
VIDEO_SUFFIXES: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mov", ".qt", ".avi", ".mkv", ".webm", ".3gp", ".3g2"}
)

#: How many leading bytes :func:`sniff_kind` needs.
HEAD_BYTES = 64

# ISO-BMFF brands that mark a still image (HEIF/AVIF), not a video: not supported here.
_IMAGE_BRANDS = frozenset(
    {b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
)
# QuickTime files without an ftyp box start with one of these atoms.
_QT_LEADING_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip"})
# BMP info-header sizes Pillow understands (BITMAPCOREHEADER ... BITMAPV5HEADER).
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


def image_format(head: bytes) -> str | None:
    """Pillow format name (``"JPEG"``, ``"PNG"``, ...) for the leading bytes, or ``None``."""
    head = bytes(head[:HEAD_BYTES])
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if (
        head[:2] == b"BM"
        and len(head) >= 18
        and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES
    ):
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    return None


def video_format(head: bytes) -> str | None:
    """FFmpeg demuxer (``"mov"``, ``"avi"``, ``"matroska"``) for the leading bytes, or ``None``."""
    head = bytes(head[:HEAD_BYTES])
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return None if head[8:12] in _IMAGE_BRANDS else "mov"
    if len(head) >= 8 and head[4:8] in _QT_LEADING_ATOMS:
        size = int.from_bytes(head[:4], "big")
        if size in (0, 1) or size >= 8:
            return "mov"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    return None


def sniff_kind(head: bytes) -> MediaKind | None:
    """Say whether ``head`` (the first bytes of a file, 64 are enough) starts an image or a video.

    Images: JPEG, PNG, GIF, WEBP, BMP, TIFF. Videos: MP4/MOV (an ``ftyp`` box, QuickTime
    included), AVI, Matroska/WebM. Anything else, HEIF/AVIF stills included, gives ``None``.
    """
    if not isinstance(head, bytes | bytearray | memoryview):
        raise InputError(f"sniff_kind needs bytes, got {type(head).__name__}")
    if image_format(head) is not None:
        return "image"
    if video_format(head) is not None:
        return "video"
    return None


def sniff_path(path: str | os.PathLike[str]) -> MediaKind | None:
    """Read the first 64 bytes of the file at ``path`` and return :func:`sniff_kind` of them."""
    with open_regular_file(path) as f:
        return sniff_kind(f.read(HEAD_BYTES))


def open_regular_file(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` to read bytes; a missing, unreadable or non-regular file is a MediaError."""
    try:
        fspath = os.fspath(path)
    except TypeError:
        raise InputError(f"expected a file path, got {type(path).__name__}") from None
    shown = one_line(os.fsdecode(fspath))
    # Check the kind of file before opening it: open() on a FIFO blocks until a writer comes,
    # and on a device it may have side effects. O_NONBLOCK also covers a swap between the
    # stat and the open (a regular file ignores the flag).
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        mode = os.stat(fspath).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(fspath)
        if not stat.S_ISREG(mode):
            raise MediaError(f"not a regular file: {shown}")
        f = open(fspath, "rb", opener=lambda p, _: os.open(p, flags))  # noqa: SIM115
    except FileNotFoundError:
        raise MediaError(f"file not found: {shown}") from None
    except IsADirectoryError:
        raise MediaError(f"not a file: {shown} is a directory") from None
    except PermissionError:
        raise MediaError(f"permission denied: {shown}") from None
    except OSError as e:
        raise MediaError(f"cannot open {shown}: {one_line(e.strerror or e)}") from None
    try:
        st = os.fstat(f.fileno())
    except OSError as e:
        f.close()
        raise MediaError(f"cannot read {shown}: {one_line(e.strerror or e)}") from None
    if not stat.S_ISREG(st.st_mode):
        f.close()
        raise MediaError(f"not a regular file: {shown}")
    return f


def read_file_limited(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """All bytes of the file at ``path``, its size checked against ``max_bytes`` before reading."""
    with open_regular_file(path) as f:
        size = os.fstat(f.fileno()).st_size
        check_byte_limit(size, max_bytes)
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise MediaError(f"cannot read {one_line(path)}: {one_line(e.strerror or e)}") from None
    check_byte_limit(len(data), max_bytes)  # the file may have grown since the stat
    return data


def check_byte_limit(size: int, max_bytes: int) -> None:
    """Raise MediaError for an empty input or one larger than ``max_bytes``."""
    if size == 0:
        raise MediaError("empty file")
    if size > max_bytes:
        raise MediaError(f"file too large: {_mib(size)} exceeds the {_mib(max_bytes)} limit")


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"
