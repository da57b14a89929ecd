"""``read_provenance``: every check on one file's bytes, each failure a note, never a crash."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import cv2
import numpy as np

from facetrust.errors import InputError, MediaError
from facetrust.media.sniff import check_byte_limit, image_format, read_file_limited, video_format
from facetrust.provenance.c2pa import read_c2pa
from facetrust.provenance.containers import read_blocks
from facetrust.provenance.metadata import interpret_blocks
from facetrust.provenance.types import Provenance, ProvenanceLimits, shorten
from facetrust.provenance.video import read_video_tags
from facetrust.provenance.watermark import MIN_PIXELS, find_watermarks

__all__ = ["read_provenance"]

_DEFAULT_LIMITS = ProvenanceLimits()
_IMAGE_MIME = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
    "BMP": "image/bmp",
}
_VIDEO_MIME = {"mov": "video/mp4", "avi": "video/x-msvideo", "matroska": None}


def read_provenance(
    source: bytes | bytearray | memoryview | str | os.PathLike[str],
    *,
    image: np.ndarray | None = None,
    limits: ProvenanceLimits = _DEFAULT_LIMITS,
    trust_anchors: str | None = None,
    watermark: bool = True,
) -> Provenance:
    """Read C2PA credentials, invisible watermarks and generator metadata of an image or video.

    ``source`` is the file's bytes or a path. ``image`` (``HxWx3`` uint8 RGB) is the decoded
    image when the caller has it already (the watermark decoder then skips decoding again); it
    must be the stored pixel grid: an image turned upright by its EXIF orientation no longer
    carries the watermark where the decoder looks, so pass it only when no rotation was applied.
    ``trust_anchors`` is PEM text of the root certificates whose C2PA signers count as trusted;
    without it no signature can be ``signed-valid``. ``watermark=False`` skips the pixel check.

    Raises MediaError only for an unreadable file (missing, empty, too large, neither an image
    nor a video by content); anything wrong inside the file becomes a note.
    """
    if not isinstance(limits, ProvenanceLimits):
        raise InputError(f"limits must be ProvenanceLimits, got {type(limits).__name__}")
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        check_byte_limit(len(data), limits.max_bytes)
    elif isinstance(source, str | os.PathLike):
        data = read_file_limited(Path(source), limits.max_bytes)
    else:
        raise InputError(
            f"cannot read provenance from {type(source).__name__}: pass bytes or a file path"
        )
    img_fmt = image_format(data[:64])
    vid_fmt = None if img_fmt else video_format(data[:64])
    if img_fmt is None and vid_fmt is None:
        raise MediaError("not a supported image or video (decided by content)")

    prov = Provenance(media="image" if img_fmt else "video", format=img_fmt or vid_fmt)
    notes = prov.notes
    mime = _IMAGE_MIME.get(img_fmt) if img_fmt else _VIDEO_MIME.get(vid_fmt or "")

    prov.evidence += read_c2pa(data, mime, notes, trust_anchors)
    prov.checked.append("c2pa")

    if img_fmt:
        ev, fields, meta_notes = interpret_blocks(read_blocks(data, img_fmt, limits), limits)
    else:
        ev, fields = read_video_tags(data, vid_fmt or "", limits, notes)
        meta_notes = []
    prov.evidence += ev
    prov.fields.update(fields)
    notes += meta_notes
    prov.checked.append("metadata")

    if img_fmt and watermark:
        if image is not None:
            prov.evidence += find_watermarks(image, notes)
            prov.checked.append("watermark")
        elif img_fmt == "JPEG" and _chroma_subsampled(data):
            # the payload lives in the chroma (U) channel at 8-pixel blocks; 4:2:0 / 4:2:2
            # chroma halves that grid, and tests/provenance measures it gone (JPEG 90, 4:2:0).
            # Decoding the pixels would cost tens of ms on large photos for nothing.
            prov.not_applicable.append("watermark")
            notes.append(
                "watermark: chroma-subsampled JPEG (4:2:0 or 4:2:2) cannot carry the Stable "
                "Diffusion watermark; not checked"
            )
        else:
            bgr = _decode_bgr(data, img_fmt, limits, notes)
            if bgr is not None:
                prov.evidence += find_watermarks(bgr, notes, channels="BGR")
                prov.checked.append("watermark")
    elif not img_fmt:
        prov.not_applicable.append("watermark")
    return prov


def _chroma_subsampled(data: bytes) -> bool:
    """True for a colour JPEG whose chroma is subsampled (header only)."""
    from PIL import Image, JpegImagePlugin

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:
                return JpegImagePlugin.get_sampling(im) in (1, 2)
    except Exception:  # noqa: BLE001 - unreadable header: let the decode path say so
        return False


def _decode_bgr(
    data: bytes, fmt: str, limits: ProvenanceLimits, notes: list[str]
) -> np.ndarray | None:
    """BGR pixels for the watermark check, or None with a note. OpenCV decodes (it skips text
    chunks, whatever their size) in the stored pixel grid (no EXIF rotation: the watermark sits
    in the stored grid); the size is read from the header first."""
    size = _dimensions(data, fmt, notes)
    if size is None:
        return None
    w, h = size
    if w * h > limits.max_watermark_pixels:
        notes.append(
            f"watermark: the image is {w}x{h}, above the "
            f"{limits.max_watermark_pixels / 1e6:g} MP the check runs on; not checked"
        )
        return None
    if w * h < MIN_PIXELS:
        notes.append(
            f"watermark: the image is {w}x{h}, below the 256x256 pixels the DWT-DCT decoder "
            "needs; not checked"
        )
        return None
    buf = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None or bgr.ndim != 3 or bgr.shape[:2] != (h, w):
        notes.append("watermark: the pixels cannot be decoded; not checked")
        return None
    return bgr


def _dimensions(data: bytes, fmt: str, notes: list[str]) -> tuple[int, int] | None:
    """(width, height) from the header: PNG's IHDR directly, other formats via Pillow."""
    if fmt == "PNG" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=[fmt]) as im:
                return im.size
    except Exception as e:  # noqa: BLE001 - Pillow raises many types on bad data
        notes.append(f"watermark: the image header cannot be read ({shorten(str(e), 120)})")
        return None
