"""Safe image decoding: content-sniffed format, size limits before decoding, upright RGB out.

Every image leaves here as an ``HxWx3`` ``uint8`` RGB array, C-contiguous: EXIF orientation
applied, alpha composited on white, 16-bit data scaled to 8 bits. Anything that cannot be
decoded raises :class:`~facetrust.errors.MediaError` with a one-line message; a wrong argument
raises :class:`~facetrust.errors.InputError`.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from facetrust.errors import InputError, MediaError
from facetrust.media.budget import check_deadline, current_budget
from facetrust.media.sniff import (
    check_byte_limit,
    image_format,
    one_line,
    read_file_limited,
    sniff_kind,
)

__all__ = ["ImageLimits", "decode_image", "image_size", "load_image"]

_SUPPORTED = "JPEG/PNG/WEBP/BMP/TIFF/GIF"

# What Pillow raises on bad input, besides its own DecompressionBomb* (not OSError subclasses).
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
)
_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


@dataclass(frozen=True)
class ImageLimits:
    """Limits checked before an image is decoded.

    ``max_pixels`` bounds width x height (read from the header, before any pixel is decoded);
    ``max_bytes`` bounds the encoded size (for a path, read from the file size before reading).
    """

    max_pixels: int = 50_000_000
    max_bytes: int = 200 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InputError(f"ImageLimits.{name} must be a positive int, got {value!r}")


_DEFAULT_LIMITS = ImageLimits()

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | np.ndarray | Image.Image


def decode_image(data: bytes, limits: ImageLimits = _DEFAULT_LIMITS) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, WEBP, BMP, TIFF, GIF) to ``HxWx3`` uint8 RGB.

    The format is decided by content. The byte limit is checked first, the pixel limit and the
    work budget's aspect ratio (:mod:`facetrust.media.budget`) from the header before decoding;
    the whole image is then decoded, so a truncated file is an error. When the budget sets
    ``analysis_max_pixels`` a larger image comes out reduced below it (a JPEG is decoded at
    1/2, 1/4 or 1/8 scale directly). GIF and other multi-frame files give their first frame.
    Pillow's own decompression-bomb guard stays in force too, so a ``max_pixels`` above about
    179 MP cannot be reached.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InputError(f"decode_image needs bytes, got {type(data).__name__}")
    _check_limits_type(limits)
    data = bytes(data)
    check_byte_limit(len(data), limits.max_bytes)
    fmt = image_format(data)
    if fmt is None:
        if sniff_kind(data) == "video":
            raise MediaError(f"not a supported image: the content is a video, not {_SUPPORTED}")
        raise MediaError(f"not a supported image (content is not {_SUPPORTED})")
    try:
        with warnings.catch_warnings():
            # facetrust applies its own pixel limit just below; Pillow's warning adds nothing
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=[fmt])
        with im:
            _check_pixels(im.size, limits.max_pixels)
            budget = current_budget()
            budget.check_aspect(*im.size)
            target = budget.analysis_max_pixels
            if target is not None and fmt == "JPEG" and im.size[0] * im.size[1] > target:
                w, h = im.size
                k = (w * h / target) ** 0.5  # draft decodes at the largest scale >= this size
                im.draft("RGB", (max(1, int(w / k)), max(1, int(h / k))))
            check_deadline("decoding the image")
            im.load()  # full decode: truncated data raises here
            check_deadline("decoding the image")
            return _pil_to_rgb(_reduce_to(im, target))
    except MediaError:
        raise
    except _BOMB_ERRORS as e:
        raise _bomb_error(e, limits.max_pixels) from None
    except Image.UnidentifiedImageError:
        raise MediaError(f"image is truncated or corrupt: bad {fmt} header") from None
    except MemoryError:
        raise MediaError("image is too large to decode in the available memory") from None
    except _DECODE_ERRORS as e:
        raise MediaError(f"image is truncated or corrupt: {_describe(e)}") from None


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from an encoded image's header (nothing decoded), or ``None``."""
    fmt = image_format(bytes(data[:64]))
    if fmt is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as im:
                return im.size
    except (*_DECODE_ERRORS, *_BOMB_ERRORS, Image.UnidentifiedImageError):
        return None


def _reduce_to(im: Image.Image, target: int | None) -> Image.Image:
    """``im`` box-reduced by the smallest integer factor that brings it to ``target`` pixels."""
    w, h = im.size
    if target is None or w * h <= target:
        return im
    factor = int(np.ceil((w * h / target) ** 0.5))
    while factor > 1 and (w // factor) * (h // factor) > target:
        factor += 1
    factor = min(factor, w, h)
    if factor <= 1:
        return im
    if im.mode.startswith("I;16"):
        im = im.convert("I")  # 16-bit grey: reduce keeps the full range
    elif im.mode not in ("RGB", "RGBA", "L", "LA", "RGBX", "CMYK", "I", "F"):
        im = im.convert("RGBA" if "transparency" in im.info or im.mode in _ALPHA_MODES else "RGB")
    out = im.reduce(factor)
    out.info = dict(im.info)
    if hasattr(im, "getexif"):
        exif = im.getexif()
        if exif:
            out.info["exif"] = exif.tobytes()
    return out


def load_image(source: ImageSource, limits: ImageLimits = _DEFAULT_LIMITS) -> np.ndarray:
    """Load an image from a path, encoded bytes, a numpy array or a PIL image.

    Returns ``HxWx3`` uint8 RGB, C-contiguous, always a new array. Arrays may be ``HxW``
    (gray), ``HxWx1``, ``HxWx3`` or ``HxWx4`` (alpha composited on white), uint8 or float in
    [0, 1].
    """
    _check_limits_type(limits)
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, limits)
    if isinstance(source, Image.Image):
        return _pil_source_to_rgb(source, limits)
    if isinstance(source, bytes | bytearray | memoryview):
        return decode_image(source, limits)
    if isinstance(source, str | os.PathLike):
        return decode_image(read_file_limited(source, limits.max_bytes), limits)
    raise InputError(
        f"cannot load an image from {type(source).__name__}: "
        "pass a file path, bytes, a numpy array or a PIL image"
    )


# --- helpers ---------------------------------------------------------------------------------


def _check_limits_type(limits: object) -> None:
    if not isinstance(limits, ImageLimits):
        raise InputError(f"limits must be an ImageLimits, got {type(limits).__name__}")


def _mp(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} MP"


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise MediaError(f"image has no pixels: {w}x{h}")
    if w * h > max_pixels:
        raise MediaError(
            f"image too large: {w}x{h} = {_mp(w * h)} exceeds the {_mp(max_pixels)} limit"
        )


def _bomb_error(e: BaseException, max_pixels: int) -> MediaError:
    """Turn Pillow's own decompression-bomb refusal into our one-line message."""
    m = re.search(r"\((\d+) pixels\)", str(e))
    if m is None:
        return MediaError(f"image too large: exceeds the {_mp(max_pixels)} limit")
    pixels = int(m.group(1))
    if pixels > max_pixels:
        return MediaError(f"image too large: {_mp(pixels)} exceeds the {_mp(max_pixels)} limit")
    return MediaError(
        f"image too large: {_mp(pixels)} exceeds Pillow's decompression-bomb limit "
        f"of {_mp(Image.MAX_IMAGE_PIXELS or 0)}"
    )


def _describe(e: BaseException) -> str:
    text = one_line(e).strip()
    return text or type(e).__name__


def _pil_source_to_rgb(im: Image.Image, limits: ImageLimits) -> np.ndarray:
    try:
        _check_pixels(im.size, limits.max_pixels)
        current_budget().check_aspect(*im.size)
        im.load()
        return _pil_to_rgb(im)
    except MediaError:
        raise
    except _BOMB_ERRORS as e:
        raise _bomb_error(e, limits.max_pixels) from None
    except MemoryError:
        raise MediaError("image is too large to decode in the available memory") from None
    except _DECODE_ERRORS as e:
        raise MediaError(f"image is truncated or corrupt: {_describe(e)}") from None


def _exif_upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation. Unreadable EXIF is treated as 'no orientation'."""
    try:
        if im.getexif().get(0x0112, 1) in (0, 1):
            return im  # upright already: no copy (exif_transpose would return one)
        out = ImageOps.exif_transpose(im)
    except _DECODE_ERRORS:
        return im
    return im if out is None else out


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    """A loaded PIL image to upright ``HxWx3`` uint8 RGB."""
    im = _exif_upright(im)
    mode = im.mode
    if mode in _SIXTEEN_BIT_MODES or mode.startswith("I;16"):
        arr = np.asarray(im)
        arr = np.clip(arr.astype(np.int64), 0, 65535)
        gray = ((arr * 255 + 32767) // 65535).astype(np.uint8)
        return _gray_to_rgb(gray)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
        if arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return _gray_to_rgb(gray)
    if mode in _ALPHA_MODES or "transparency" in im.info:
        try:
            if mode != "RGBA":
                im = im.convert("RGBA")
        except ValueError as e:
            raise MediaError(f"unsupported colour mode {mode}: {_describe(e)}") from None
        return _composite_pil_on_white(im)
    if mode != "RGB":
        try:
            im = im.convert("RGB")
        except ValueError as e:
            raise MediaError(f"unsupported colour mode {mode}: {_describe(e)}") from None
    return np.array(im, dtype=np.uint8, order="C", copy=True)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _composite_pil_on_white(im: Image.Image) -> np.ndarray:
    """An RGBA PIL image over white, to ``HxWx3`` uint8, read in bands of rows (no full-size
    copy of the RGBA pixels besides Pillow's own)."""
    w, h = im.size
    out = np.empty((h, w, 3), np.uint8)
    band = max(1, (4 << 20) // max(1, w * 4))
    for y in range(0, h, band):
        out[y : y + band] = _composite_on_white(np.asarray(im.crop((0, y, w, min(h, y + band)))))
    return out


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """``HxWx4`` uint8 RGBA over a white background, to ``HxWx3`` uint8.

    Done in bands of rows, so the 16-bit temporaries stay a few MB whatever the image size."""
    h, w = rgba.shape[:2]
    out = np.empty((h, w, 3), np.uint8)
    band = max(1, (4 << 20) // max(1, w * 3))
    for y in range(0, h, band):
        part = rgba[y : y + band]
        rgb = part[:, :, :3].astype(np.uint16)
        alpha = part[:, :, 3:4].astype(np.uint16)
        out[y : y + band] = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return out


def _array_to_rgb(arr: np.ndarray, limits: ImageLimits) -> np.ndarray:
    shape = arr.shape
    if arr.ndim == 3 and shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise InputError(f"image array must be HxW, HxWx3 or HxWx4, got shape {shape}")
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        raise InputError(f"image array is empty: shape {shape}")
    if h * w > limits.max_pixels:
        raise MediaError(
            f"image too large: {w}x{h} = {_mp(h * w)} exceeds the {_mp(limits.max_pixels)} limit"
        )
    current_budget().check_aspect(w, h)
    if arr.dtype == np.uint8:
        u8 = arr
    elif np.issubdtype(arr.dtype, np.floating):
        f = arr.astype(np.float32, copy=False)
        if not np.isfinite(f).all():
            raise InputError("image array has NaN or infinite values")
        lo, hi = float(f.min()), float(f.max())
        if lo < -1e-6 or hi > 1.0 + 1e-6:
            raise InputError(
                f"float image array must hold values in [0, 1], got [{lo:.3g}, {hi:.3g}]"
            )
        u8 = np.rint(np.clip(f, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise InputError(f"image array must be uint8 or float in [0, 1], got dtype {arr.dtype}")
    if u8.ndim == 2:
        return _gray_to_rgb(u8)
    if u8.shape[2] == 4:
        return _composite_on_white(u8)
    return np.array(u8, dtype=np.uint8, order="C", copy=True)
