"""Image quality (PSNR, SSIM, on the whole image or on the face region), the visibility word
derived from the face-region figures, and the identity-stability score with its bands.

SSIM follows Wang et al. (2004) as scikit-image computes it with ``gaussian_weights=True``:
Gaussian window sigma 1.5 (11 x 11), K1 = 0.01, K2 = 0.03, population covariances, each colour
channel separately, the map averaged after cropping the 5-pixel border; 8-bit data range.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from facetrust.errors import InputError

__all__ = [
    "BANDS",
    "VISIBILITY",
    "identity_band",
    "linf",
    "psnr",
    "region_psnr",
    "region_ssim",
    "ssim",
    "ssim_map",
    "visibility",
]

# identity-stability bands (cosine similarity of original vs protected embeddings)
BANDS = (("strong", 0.3), ("moderate", 0.6), ("weak", math.inf))


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise InputError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3) or a.size == 0:
        raise InputError(f"images must be (H, W) or (H, W, C), got {a.shape}")
    return a.astype(np.float64), b.astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical images)."""
    a, b = _pair(a, b)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> np.ndarray:
    """Per-pixel SSIM ``(H, W)`` (colour channels averaged), border not cropped."""
    a, b = _pair(a, b)
    if min(a.shape[:2]) < 11:
        raise InputError("SSIM needs images of at least 11 x 11 pixels")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    out = np.zeros(a.shape[:2], np.float64)
    for c in range(a.shape[2]):
        x, y = a[..., c], b[..., c]
        mx, my = blur(x), blur(y)
        vx = blur(x * x) - mx * mx
        vy = blur(y * y) - my * my
        cxy = blur(x * y) - mx * my
        out += ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return out / a.shape[2]


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Mean structural similarity of two images (colour channels averaged)."""
    pad = 5
    return float(ssim_map(a, b, data_range)[pad:-pad, pad:-pad].mean())


def linf(a: np.ndarray, b: np.ndarray) -> int:
    """Largest absolute pixel difference (in 8-bit levels, i.e. /255 units)."""
    a, b = _pair(a, b)
    return int(np.abs(a - b).max())


def identity_band(similarity: float) -> str:
    """``strong`` (< 0.3), ``moderate`` (0.3-0.6) or ``weak`` (>= 0.6) protection."""
    for name, upper in BANDS:
        if similarity < upper:
            return name
    return BANDS[-1][0]


def _region(region: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    r = np.asarray(region, dtype=bool)
    if r.shape != tuple(shape[:2]):
        raise InputError(f"region must be (H, W) = {tuple(shape[:2])}, got {r.shape}")
    return r


def region_psnr(
    a: np.ndarray, b: np.ndarray, region: np.ndarray, data_range: float = 255.0
) -> float:
    """PSNR (dB) over the pixels where ``region`` is True (``inf`` when unchanged there)."""
    a, b = _pair(a, b)
    r = _region(region, a.shape)
    if not r.any():
        return math.inf
    mse = float(np.mean((a[r] - b[r]) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def region_ssim(
    a: np.ndarray, b: np.ndarray, region: np.ndarray, data_range: float = 255.0
) -> float:
    """Mean SSIM over the pixels where ``region`` is True (each pixel's 11 x 11 neighbourhood
    counts, so a change just outside the region that shows inside it is seen)."""
    r = _region(region, np.shape(a))
    if not r.any():
        return 1.0
    return float(ssim_map(a, b, data_range)[r].mean())


# The visibility word, from the face-region figures: (word, SSIM at least, PSNR at least).
# The limits are where a change stopped being seen on benchmarks/protect_sheet.png (100 % size:
# invisible; 4x enlarged: visible), see README "Protection".
VISIBILITY = (
    ("invisible at normal size", 0.97, 35.0),
    ("visible when enlarged", 0.95, 31.0),
    ("visible", -math.inf, -math.inf),
)


def visibility(face_ssim: float | None, face_psnr: float | None) -> str:
    """The word for how visible a change is, from its face-region SSIM and PSNR (both must
    reach a level's limits); ``unchanged`` when nothing changed (``None``/``inf`` PSNR)."""
    if face_psnr is None or math.isinf(face_psnr):
        return "unchanged"
    s = 1.0 if face_ssim is None else face_ssim
    for word, min_ssim, min_psnr in VISIBILITY:
        if s >= min_ssim and face_psnr >= min_psnr:
            return word
    return VISIBILITY[-1][0]
