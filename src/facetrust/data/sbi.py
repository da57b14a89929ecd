"""Self-Blended Images: pseudo-fakes made from a real face alone.

After Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images" (CVPR 2022); this is
an independent implementation of the method as the paper describes it. Two copies of one face
are made: the *source* gets colour transforms (RGB shift, hue/saturation/value, brightness and
contrast), a frequency transform (blur, sharpen, or down-and-up scaling) and a small geometric
transform (scale by 1 ± ``max_scale`` and shift by up to ``max_shift`` of the crop side), so
that its boundary no longer lines up with the *target*, the untouched original. The source is
blended into the target inside a soft mask made from the landmarks' convex hull::

    m = mask * r,  r drawn from cfg.blend_ratios
    fake = source * m + target * (1 - m)

Pixels where ``m == 0`` are the original exactly. A detector trained on real vs self-blended
faces learns generic blending cues (colour mismatch, boundary, frequency), not one generator.

Mask regions (``SBIConfig.regions``, drawn uniformly from the tuple, repeats weight a region);
they need the 468 FaceMesh points, with fewer points (any ``(N, 2)``) only ``full`` is used:

- ``full``: convex hull of all landmarks;
- ``no_forehead``: points below the eyebrows' upper edge (drops the upper forehead);
- ``lower``: points below the eyes (nose, cheeks, mouth, jaw), as in mouth/lower-face edits;
- ``central``: eyes, nose and mouth, without the jaw line and cheek edges.

Fallback: when ``landmarks`` is ``None`` or degenerate (non-finite values, fewer than 3 points,
a hull smaller than 1% of the image, or fewer than 80% of the points inside it), or when
``cfg.hull == "ellipse"``, the mask is an ellipse centred on the crop with semi-axes
0.3 W x 0.4 H (where the face lies in an aligned crop with a margin).

Mask shape: the polygon is resampled, its radius jittered smoothly by up to
``mask_deform / 2`` of the face radius R (distance from the hull centroid to its farthest
vertex), then eroded or dilated by up to ``mask_deform / 2 * R`` pixels. It is then blurred
twice (kernel sizes drawn from ``mask_blur``, in pixels of a 256-px crop, scaled with the crop
side): the first blur is thresholded at 1 (which pulls the edge inward), the second softens the
edge, and the result is scaled to a maximum of 1. So the mask is 0 farther than
``mask_deform * R + k_max / 2`` outside the hull (``mask_reach``) and 1 deep inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from facetrust.errors import InputError
from facetrust.faces.types import _LEFT_EYE, _RIGHT_EYE

__all__ = [
    "REGIONS",
    "SBIConfig",
    "ellipse_polygon",
    "landmark_hull_mask",
    "make_pseudo_fake",
    "mask_reach",
    "self_blend",
]

REGIONS = ("full", "no_forehead", "lower", "central")
REF_SIDE = 256  # mask_blur kernel sizes are given for a crop of this side
_MIN_AREA = 0.01  # a hull below this fraction of the image is degenerate
_MIN_INSIDE = 0.8  # fraction of the landmarks that must lie inside the image


@dataclass(frozen=True)
class SBIConfig:
    """Settings of ``self_blend``.

    Attributes:
        blend_ratios: the mask is multiplied by one of these, drawn uniformly.
        mask_blur: range of the two Gaussian kernel sides, pixels at a 256-px crop.
        mask_deform: how far the mask boundary may move in or out, as a fraction of the face
            radius (half by smooth radial jitter, half by erosion/dilation); 0 = none.
        color_shift: strength of the source's colour transforms (1 = RGB shift up to ±20,
            hue ±10°, saturation ±15%, brightness ±5%, contrast ±10%).
        color_prob: probability of each colour transform (at least one is always applied).
        freq_prob: probability of one frequency transform (blur, sharpen or down-up scale).
        max_shift: source translation, at most this fraction of the crop side in x and y.
        max_scale: source scale is drawn from ``[1 - max_scale, 1 + max_scale]``.
        regions: mask regions to draw from (see the module docstring).
        hull: ``"landmarks"`` (ellipse only as fallback) or ``"ellipse"`` (always).
    """

    blend_ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
    mask_blur: tuple[float, float] = (3.0, 15.0)
    mask_deform: float = 0.1
    color_shift: float = 1.0
    color_prob: float = 0.5
    freq_prob: float = 0.9
    max_shift: float = 0.03
    max_scale: float = 0.05
    regions: tuple[str, ...] = ("full", "full", "full", "no_forehead", "lower", "central")
    hull: Literal["landmarks", "ellipse"] = "landmarks"

    def __post_init__(self) -> None:
        if not self.blend_ratios or not all(0.0 < r <= 1.0 for r in self.blend_ratios):
            raise InputError(f"blend_ratios must be non-empty, each in (0, 1]: {self.blend_ratios}")
        lo, hi = self.mask_blur
        if not 1.0 <= lo <= hi:
            raise InputError(f"mask_blur must be (lo, hi) with 1 <= lo <= hi: {self.mask_blur}")
        if not 0.0 <= self.mask_deform <= 0.5:
            raise InputError(f"mask_deform must be in [0, 0.5]: {self.mask_deform}")
        for name in ("color_prob", "freq_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{name} must be in [0, 1]: {getattr(self, name)}")
        if self.color_shift < 0 or not 0 <= self.max_shift <= 0.25 or not 0 <= self.max_scale < 0.5:
            raise InputError("color_shift >= 0, max_shift in [0, 0.25], max_scale in [0, 0.5)")
        bad = [r for r in self.regions if r not in REGIONS]
        if not self.regions or bad:
            raise InputError(f"unknown mask regions {bad}: use {', '.join(REGIONS)}")
        if self.hull not in ("landmarks", "ellipse"):
            raise InputError(f"hull must be 'landmarks' or 'ellipse', got {self.hull!r}")


# ----------------------------------------------------------------------------- masks


def _check_image(image: np.ndarray) -> None:
    if not (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
    ):
        got = getattr(image, "dtype", type(image).__name__), getattr(image, "shape", None)
        raise InputError(f"expected a uint8 (H, W, 3) image, got {got[0]} {got[1]}")


def _as_points(landmarks: np.ndarray | None) -> np.ndarray | None:
    if landmarks is None:
        return None
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise InputError(f"landmarks must be (N, 2) or (N, 3), got shape {pts.shape}")
    return pts[:, :2]


def _usable(pts: np.ndarray | None, h: int, w: int) -> bool:
    """Landmarks that give a sensible hull (see the module docstring)."""
    if pts is None or len(pts) < 3 or not np.all(np.isfinite(pts)):
        return False
    inside = (pts[:, 0] >= 0) & (pts[:, 0] <= w) & (pts[:, 1] >= 0) & (pts[:, 1] <= h)
    if inside.mean() < _MIN_INSIDE:
        return False
    area = cv2.contourArea(cv2.convexHull(pts.astype(np.float32)))
    return area >= _MIN_AREA * h * w


def ellipse_polygon(size: tuple[int, int], n: int = 72) -> np.ndarray:
    """The fallback region: an ellipse centred on an ``(H, W)`` crop, semi-axes 0.3 W x 0.4 H,
    as ``(n, 2)`` float x, y vertices."""
    h, w = size
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([w / 2 + 0.3 * w * np.cos(t), h / 2 + 0.4 * h * np.sin(t)], axis=1)


def _region_points(pts: np.ndarray, region: str) -> np.ndarray:
    """The landmarks of ``region``, in a frame aligned with the eyes (FaceMesh indices)."""
    if region == "full" or len(pts) != 468:
        return pts
    right = pts[list(_RIGHT_EYE)].mean(axis=0)
    left = pts[list(_LEFT_EYE)].mean(axis=0)
    d = float(np.linalg.norm(left - right))
    if d < 1e-6:
        return pts
    u = (left - right) / d
    v = np.array([-u[1], u[0]])  # points down the face when the eyes are level
    rel = pts - (left + right) / 2
    a, b = rel @ u / d, rel @ v / d  # across and down, in eye distances
    if region == "no_forehead":
        keep = b >= -0.45
    elif region == "lower":
        keep = b >= 0.25
    else:  # central
        keep = (np.abs(a) <= 0.85) & (b >= -0.45) & (b <= 1.15)
    sub = pts[keep]
    if len(sub) < 3 or cv2.contourArea(cv2.convexHull(sub.astype(np.float32))) < 1.0:
        return pts
    return sub


def _resample(poly: np.ndarray, n: int = 96) -> np.ndarray:
    """``n`` points evenly spaced along a closed polygon."""
    closed = np.vstack([poly, poly[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0, cum[-1], n, endpoint=False)
    return np.stack([np.interp(t, cum, closed[:, 0]), np.interp(t, cum, closed[:, 1])], axis=1)


def _kernel(rng: np.random.Generator, blur: tuple[float, float], scale: float) -> int:
    k = rng.uniform(*blur) * scale
    return max(1, int(2 * round((k - 1) / 2) + 1))


def _polygon(
    pts: np.ndarray | None, size: tuple[int, int], region: str, hull: str
) -> tuple[np.ndarray, float]:
    """The mask polygon (convex hull of the region or the fallback ellipse) and its radius."""
    h, w = size
    if hull == "ellipse" or not _usable(pts, h, w):
        poly = ellipse_polygon(size)
    else:
        sub = _region_points(pts, region)
        poly = cv2.convexHull(sub.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    centre = poly.mean(axis=0)
    radius = float(np.linalg.norm(poly - centre, axis=1).max())
    return poly, radius


def mask_reach(
    landmarks_xy: np.ndarray | None, size: tuple[int, int], cfg: SBIConfig | None = None
) -> float:
    """How far (pixels) outside the landmarks' full hull (or the fallback ellipse) a mask from
    ``landmark_hull_mask`` can be non-zero: ``mask_deform * R + k_max / 2`` (+1 for rounding)."""
    cfg = cfg or SBIConfig()
    _, radius = _polygon(_as_points(landmarks_xy), size, "full", cfg.hull)
    k_max = cfg.mask_blur[1] * max(size) / REF_SIDE + 2  # odd rounding adds at most 2
    return cfg.mask_deform * radius + k_max / 2 + 1


def landmark_hull_mask(
    landmarks_xy: np.ndarray | None,
    size: tuple[int, int],
    rng: np.random.Generator,
    deform: bool = True,
    *,
    cfg: SBIConfig | None = None,
    region: str | None = None,
) -> np.ndarray:
    """A soft blending mask from face landmarks.

    Args:
        landmarks_xy: ``(N, 2)`` (or ``(N, 3)``, z ignored) pixels in the crop; the region
            variants need the 468 FaceMesh points. ``None``/degenerate: the fallback ellipse.
        size: ``(H, W)`` of the crop.
        rng: the source of all randomness.
        deform: jitter and erode/dilate the region (``cfg.mask_deform``); blurring is always
            done (use ``mask_blur=(1, 1)`` for a hard mask).
        cfg: settings (``mask_blur``, ``mask_deform``, ``regions``, ``hull``).
        region: force one of ``REGIONS``; default: drawn from ``cfg.regions``.
    Returns:
        ``(H, W)`` float32 in [0, 1].
    """
    cfg = cfg or SBIConfig()
    h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise InputError(f"mask size must be positive, got {size}")
    if region is None:
        region = str(cfg.regions[int(rng.integers(len(cfg.regions)))])
    elif region not in REGIONS:
        raise InputError(f"unknown mask region {region!r}: use {', '.join(REGIONS)}")
    poly, radius = _polygon(_as_points(landmarks_xy), (h, w), region, cfg.hull)

    morph = 0
    if deform and cfg.mask_deform > 0:
        half = cfg.mask_deform / 2
        poly = _resample(poly)
        centre = poly.mean(axis=0)
        theta = np.arctan2(poly[:, 1] - centre[1], poly[:, 0] - centre[0])
        amp = rng.dirichlet(np.ones(3)) * half * rng.uniform(0.3, 1.0)  # sum <= half
        phase = rng.uniform(0, 2 * np.pi, 3)
        jitter = sum(amp[k] * np.cos((k + 1) * theta + phase[k]) for k in range(3))
        poly = centre + (poly - centre) * (1 + jitter)[:, None]
        morph = int(np.floor(rng.uniform(-half, half) * radius))

    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    if morph != 0:
        kern = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(morph) + 1,) * 2)
        op = cv2.dilate if morph > 0 else cv2.erode
        shrunk = op(mask, kern)
        if shrunk.any():
            mask = shrunk

    m = mask.astype(np.float32)
    scale = max(h, w) / REF_SIDE
    k1, k2 = _kernel(rng, cfg.mask_blur, scale), _kernel(rng, cfg.mask_blur, scale)
    if k1 > 1:
        b = cv2.GaussianBlur(m, (k1, k1), 0)
        inner = (b >= 1 - 1e-4).astype(np.float32)  # pulls the edge inward by about k1/2
        if inner.any():
            m = inner
    if k2 > 1:
        m = cv2.GaussianBlur(m, (k2, k2), 0)
    top = float(m.max())
    if top > 0:
        m = np.clip(m / top, 0.0, 1.0)
    m[m < 1e-4] = 0.0
    return m.astype(np.float32)


# ----------------------------------------------------------------------------- source


def _color(img: np.ndarray, rng: np.random.Generator, cfg: SBIConfig) -> np.ndarray:
    """RGB shift, HSV change and brightness/contrast on a float32 RGB image in [0, 255]."""
    c = cfg.color_shift
    chosen = rng.random(3) < cfg.color_prob
    if not chosen.any():
        chosen[rng.integers(3)] = True
    out = img
    if chosen[0]:  # RGB shift: per-channel offset, at least a quarter of the maximum
        mag = rng.uniform(0.25, 1.0, 3) * 20 * c
        out = out + (mag * rng.choice([-1.0, 1.0], 3)).astype(np.float32)
    if chosen[1]:  # hue (OpenCV units of 2 degrees), saturation and value
        hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
        hsv = hsv.astype(np.float32)
        hsv[..., 0] = np.mod(hsv[..., 0] + rng.uniform(-5, 5) * c, 180)
        hsv[..., 1] *= 1 + rng.uniform(-0.15, 0.15) * c
        hsv[..., 2] *= 1 + rng.uniform(-0.1, 0.1) * c
        hsv = np.clip(hsv, 0, [179, 255, 255]).astype(np.uint8)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)
    if chosen[2]:  # contrast about the mean, then brightness
        alpha = 1 + rng.uniform(-0.1, 0.1) * c
        beta = rng.uniform(-0.05, 0.05) * 255 * c
        mean = out.mean(axis=(0, 1), keepdims=True)
        out = (out - mean) * alpha + mean + beta
    return np.clip(out, 0, 255)


def _frequency(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of: Gaussian blur, unsharp-mask sharpening, down-and-up scaling."""
    h, w = img.shape[:2]
    kind = int(rng.integers(3))
    if kind == 0:
        return cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    if kind == 1:
        soft = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.8, 1.5))
        return np.clip(img + rng.uniform(0.3, 1.0) * (img - soft), 0, 255)
    s = rng.uniform(0.5, 0.9)
    small = cv2.resize(
        img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _geometric(
    img: np.ndarray, centre: np.ndarray, rng: np.random.Generator, cfg: SBIConfig
) -> np.ndarray:
    """Scale about ``centre`` by 1 ± max_scale and shift by up to max_shift of the side."""
    h, w = img.shape[:2]
    s = 1 + rng.uniform(-cfg.max_scale, cfg.max_scale)
    tx, ty = rng.uniform(-cfg.max_shift, cfg.max_shift, 2) * np.array([w, h])
    cx, cy = centre
    m = np.array([[s, 0, (1 - s) * cx + tx], [0, s, (1 - s) * cy + ty]], dtype=np.float64)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def self_blend(
    image: np.ndarray,
    landmarks_xy: np.ndarray | None,
    rng: np.random.Generator,
    cfg: SBIConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Make a self-blended pseudo-fake of a real face crop.

    Args:
        image: ``(H, W, 3)`` uint8 RGB face crop.
        landmarks_xy: ``(468, 2)`` FaceMesh landmarks in crop pixels (``(N, 2)`` works with
            the ``full`` region only; ``None`` or degenerate: the centred-ellipse fallback).
        rng: the source of all randomness; the same seed gives the same result.
        cfg: settings; default ``SBIConfig()``.
    Returns:
        ``(fake, m)``: the fake ``(H, W, 3)`` uint8, and the blend mask actually used,
        ``(H, W)`` float32 in [0, max blend ratio]; where ``m == 0`` the fake equals ``image``.
    """
    cfg = cfg or SBIConfig()
    _check_image(image)
    h, w = image.shape[:2]
    mask = landmark_hull_mask(landmarks_xy, (h, w), rng, cfg=cfg)
    ratio = float(cfg.blend_ratios[int(rng.integers(len(cfg.blend_ratios)))])

    target = image.astype(np.float32)
    source = _color(target, rng, cfg)
    if rng.random() < cfg.freq_prob:
        source = _frequency(source, rng)
    ys, xs = np.nonzero(mask)
    centre = np.array([xs.mean(), ys.mean()]) if len(xs) else np.array([w / 2, h / 2])
    source = _geometric(source.astype(np.float32), centre, rng, cfg)

    m = (mask * ratio).astype(np.float32)
    fake = source * m[..., None] + target * (1 - m[..., None])
    fake = np.clip(np.rint(fake), 0, 255).astype(np.uint8)
    return fake, m


def make_pseudo_fake(
    image: np.ndarray,
    landmarks_xy: np.ndarray | None,
    rng: np.random.Generator,
    cfg: SBIConfig | None = None,
) -> np.ndarray:
    """``self_blend`` without the mask: the fake ``(H, W, 3)`` uint8 only (label it fake)."""
    return self_blend(image, landmarks_xy, rng, cfg)[0]
