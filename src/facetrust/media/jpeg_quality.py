"""What an encoded image's header says: format, colour mode, and the JPEG quality its
quantisation table implies (libjpeg's standard tables, quality 1-100)."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["estimate_jpeg_quality", "image_format_info"]

# IJG standard luminance quantisation table (natural order, as Pillow reports it).
_STD_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55]
    + [14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62]
    + [18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92]
    + [49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.float64,
)


def _ijg_tables() -> np.ndarray:
    q = np.arange(1, 101, dtype=np.float64)
    scale = np.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)
    return np.clip(np.floor((_STD_LUMA[None, :] * scale[:, None] + 50.0) / 100.0), 1, 255)


_IJG = _ijg_tables()  # (100, 64): row q-1 is the table libjpeg writes for quality q


def estimate_jpeg_quality(luma_table: Iterable[int]) -> int | None:
    """Quality (1-100) whose IJG-scaled standard luminance table is nearest (L1) to ``luma_table``.

    Exact for files written by libjpeg/Pillow/OpenCV with a ``quality`` setting; an estimate for
    encoders with their own tables. ``None`` when the table is not 64 entries.
    """
    t = np.asarray(list(luma_table), dtype=np.float64).ravel()
    if t.size != 64:
        return None
    dist = np.abs(_IJG - np.clip(t, 1, 255)[None, :]).sum(axis=1)
    return int(np.argmin(dist)) + 1


# --- discovery -------------------------------------------------------------------------------


def image_format_info(data: bytes) -> dict[str, Any]:
    """Format, colour mode and estimated JPEG quality of encoded image bytes (header only)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data)) as im:
            fmt, mode = im.format, im.mode
            quality = None
            tables = getattr(im, "quantization", None)
            if fmt == "JPEG" and tables:
                quality = estimate_jpeg_quality(tables.get(0, tables[min(tables)]))
    return {"format": fmt, "mode": mode, "jpeg_quality": quality}
