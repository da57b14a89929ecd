"""``splice``: a facial region pasted from another real face (editing / photoshop-like fakes).

After the splice and region-swap pseudo-fakes of the blending line of work (Face X-ray, Li et
al., CVPR 2020; SBI, Shiohara & Yamasaki, CVPR 2022), and the content-aligned training fakes of
B-Free (Guillaro et al., CVPR 2025): the fake keeps its real's content everywhere but in one
region. A landmark region (``eyes``, ``nose``, ``mouth`` or ``inner_face``) of a *donor* (another
real face crop) is

1. aligned to the target by a similarity transform (rotation, uniform scale, shift) fitted by
   least squares (Umeyama) on the region's FaceMesh landmarks of both faces;
2. colour-matched: each LAB channel of the warped donor is shifted and scaled to the target's
   mean and standard deviation inside the region (probability ``color_match``);
3. blended into the target through a feathered mask: the region's convex hull(s), dilated by
   ``grow + 2 * feather`` and blurred with a Gaussian of sigma ``feather`` (both fractions of
   the target's inter-ocular distance ``iod``, drawn per call; the hull itself stays at ~1),
   times a ratio from ``blend_ratios``.

Outside ``(grow_max + 5 * feather_max) * iod + 2`` pixels of the region hull the fake equals the
real exactly (``splice_reach``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facetrust.data.pseudo.registry import (
    PseudoFakeMaker,
    as_generator,
    facemesh_points,
    register_pseudo_fake,
)
from facetrust.data.sbi import _check_image
from facetrust.errors import InputError
from facetrust.faces.types import _LEFT_EYE, _RIGHT_EYE

__all__ = [
    "SPLICE_REGIONS",
    "SpliceConfig",
    "Splice",
    "inter_ocular",
    "region_hull_mask",
    "splice",
    "splice_reach",
]

# FaceMesh (468-point) index sets, as MediaPipe's face_mesh_connections names them; "right" is
# the subject's right (image left), matching facetrust.faces.types._RIGHT_EYE.
_RIGHT_BROW = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
_LEFT_BROW = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
_NOSE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 294, 278, 344, 440, 275, 45)
_NOSE = (*_NOSE, 220, 115, 48, 64)
_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270)
_LIPS = (*_LIPS, 409, 78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13)
_LIPS = (*_LIPS, 312, 311, 310, 415)

#: region name -> groups of landmark indices; the region is the union of each group's hull.
SPLICE_REGIONS: dict[str, tuple[tuple[int, ...], ...]] = {
    "eyes": (_RIGHT_EYE + _RIGHT_BROW, _LEFT_EYE + _LEFT_BROW),
    "nose": (_NOSE,),
    "mouth": (_LIPS,),
    "inner_face": (_RIGHT_EYE + _RIGHT_BROW + _LEFT_EYE + _LEFT_BROW + _NOSE + _LIPS,),
}


@dataclass(frozen=True)
class SpliceConfig:
    """Settings of ``splice``.

    Attributes:
        regions: regions drawn uniformly (repeats weight one), keys of ``SPLICE_REGIONS``.
        grow: ``(lo, hi)`` dilation of the region hull, fraction of the inter-ocular distance.
        feather: ``(lo, hi)`` Gaussian sigma of the mask edge, fraction of that distance.
        color_match: probability of the LAB mean/std colour match.
        blend_ratios: the mask is multiplied by one of these, drawn uniformly.
    """

    regions: tuple[str, ...] = ("eyes", "nose", "mouth", "inner_face")
    grow: tuple[float, float] = (0.05, 0.15)
    feather: tuple[float, float] = (0.03, 0.08)
    color_match: float = 0.9
    blend_ratios: tuple[float, ...] = (0.7, 0.85, 1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        bad = [r for r in self.regions if r not in SPLICE_REGIONS]
        if not self.regions or bad:
            raise InputError(f"unknown splice regions {bad}: use {', '.join(SPLICE_REGIONS)}")
        for name in ("grow", "feather"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi <= 1.0:
                raise InputError(f"{name} must be (lo, hi) with 0 <= lo <= hi <= 1")
        if not 0.0 <= self.color_match <= 1.0:
            raise InputError(f"color_match must be in [0, 1]: {self.color_match}")
        if not self.blend_ratios or not all(0.0 < r <= 1.0 for r in self.blend_ratios):
            raise InputError(f"blend_ratios must be non-empty, each in (0, 1]: {self.blend_ratios}")


def inter_ocular(landmarks: np.ndarray) -> float:
    """Distance between the two eye centres of ``(468, 2)`` FaceMesh points (at least 1)."""
    pts = np.asarray(landmarks, dtype=np.float64)
    right = pts[list(_RIGHT_EYE), :2].mean(axis=0)
    left = pts[list(_LEFT_EYE), :2].mean(axis=0)
    return max(1.0, float(np.linalg.norm(left - right)))


def splice_reach(landmarks: np.ndarray, cfg: SpliceConfig | None = None) -> float:
    """Pixels beyond the region hull where a splice mask can still be non-zero."""
    cfg = cfg or SpliceConfig()
    return (cfg.grow[1] + 5 * cfg.feather[1]) * inter_ocular(landmarks) + 2.0


def region_hull_mask(landmarks: np.ndarray, size: tuple[int, int], region: str) -> np.ndarray:
    """``(H, W)`` uint8 0/1: the union of the convex hulls of ``region``'s landmark groups."""
    if region not in SPLICE_REGIONS:
        raise InputError(f"unknown splice region {region!r}: use {', '.join(SPLICE_REGIONS)}")
    pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
    mask = np.zeros(size, np.uint8)
    for group in SPLICE_REGIONS[region]:
        hull = cv2.convexHull(pts[list(group)].astype(np.float32)).reshape(-1, 2)
        cv2.fillPoly(mask, [np.round(hull * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    return mask


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity taking ``src`` points to ``dst`` (Umeyama 1991)."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ sign @ vt
    var = (s**2).sum() / len(src)
    scale = float((sig * np.diag(sign)).sum() / var) if var > 1e-12 else 1.0
    a = scale * rot
    return np.hstack([a, (mu_d - a @ mu_s)[:, None]])


def _color_match(src: np.ndarray, dst: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """``src`` (float32 RGB 0-255) with its LAB mean/std inside ``inside`` set to ``dst``'s."""
    lab_s = cv2.cvtColor(src / 255.0, cv2.COLOR_RGB2LAB)
    lab_d = cv2.cvtColor(dst / 255.0, cv2.COLOR_RGB2LAB)
    for c in range(3):
        vs, vd = lab_s[..., c][inside], lab_d[..., c][inside]
        gain = float(np.clip(vd.std() / max(vs.std(), 1e-3), 0.5, 2.0))
        lab_s[..., c] = (lab_s[..., c] - vs.mean()) * gain + vd.mean()
    lab_s[..., 0] = np.clip(lab_s[..., 0], 0, 100)
    return np.clip(cv2.cvtColor(lab_s, cv2.COLOR_LAB2RGB) * 255.0, 0, 255)


def splice(
    image: np.ndarray,
    landmarks: np.ndarray,
    donor: np.ndarray,
    donor_landmarks: np.ndarray,
    rng: np.random.Generator | int | None = None,
    cfg: SpliceConfig | None = None,
    *,
    region: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste a landmark region of ``donor`` onto ``image`` (see the module docstring).

    Args:
        image: ``(H, W, 3)`` uint8 RGB real face crop (the target).
        landmarks: its ``(468, 2)`` FaceMesh points in crop pixels.
        donor: another real face crop, uint8 ``(h, w, 3)`` (any size), and ``donor_landmarks``
            its ``(468, 2)`` points.
        rng: a numpy Generator or an int seed.
        region: force one of ``SPLICE_REGIONS``; default drawn from ``cfg.regions``.
    Returns:
        ``(fake, mask)``: uint8 ``(H, W, 3)`` and the blend mask, float32 ``(H, W)`` in [0, 1];
        where ``mask == 0`` the fake equals ``image``.
    """
    cfg = cfg or SpliceConfig()
    g = as_generator(rng)
    _check_image(image)
    _check_image(donor)
    tgt = facemesh_points(landmarks, "splice needs the image's landmarks")
    src = facemesh_points(donor_landmarks, "splice needs the donor's landmarks")
    if region is None:
        region = str(cfg.regions[int(g.integers(len(cfg.regions)))])
    h, w = image.shape[:2]
    hull = region_hull_mask(tgt, (h, w), region)
    if not hull.any():
        raise InputError(f"the {region} region of the landmarks lies outside the image")

    iod = inter_ocular(tgt)
    sigma = g.uniform(*cfg.feather) * iod
    grow = int(round(g.uniform(*cfg.grow) * iod + 2 * sigma))  # the hull itself stays ~1
    mask = hull
    if grow > 0:
        mask = cv2.dilate(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1,) * 2))
    m = mask.astype(np.float32)
    if sigma > 0.3:
        k = 2 * int(np.ceil(3 * sigma)) + 1
        m = cv2.GaussianBlur(m, (k, k), sigma, borderType=cv2.BORDER_CONSTANT)
        m = np.clip(m / max(float(m.max()), 1e-6), 0.0, 1.0)
    m[m < 1e-3] = 0.0
    m *= float(cfg.blend_ratios[int(g.integers(len(cfg.blend_ratios)))])

    idx = sorted({i for group in SPLICE_REGIONS[region] for i in group})
    affine = _similarity(src[idx], tgt[idx])
    warped = cv2.warpAffine(
        donor.astype(np.float32),
        affine,
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    target = image.astype(np.float32)
    if g.random() < cfg.color_match:
        warped = _color_match(warped, target, mask.astype(bool))
    fake = warped * m[..., None] + target * (1 - m[..., None])
    return np.clip(np.rint(fake), 0, 255).astype(np.uint8), m.astype(np.float32)


@register_pseudo_fake
class Splice(PseudoFakeMaker):
    """Region splice from a donor face; settings: :class:`SpliceConfig`."""

    name = "splice"
    config_class = SpliceConfig
    needs_landmarks = True
    needs_donor = True

    def make(
        self,
        image: np.ndarray,
        landmarks: np.ndarray | None,
        rng: np.random.Generator,
        donor: np.ndarray | None,
        donor_landmarks: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        return splice(image, landmarks, donor, donor_landmarks, rng, self.cfg)
