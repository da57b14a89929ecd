"""The cloak's budget: how much the eye may see on the face, and where the change may go.

**What is budgeted.** The change is measured on the *face region*: the pixels where the face's
feathered mask (:mod:`.mask`) is at least 0.5, i.e. the face the cloak touches, not the whole
photo (a whole-image PSNR hides a strong change on a small face). Two bounds, both on that
region, both against the original photo: SSIM (Wang et al. 2004, as :func:`.metrics.ssim_map`),
which tolerates more change where the face is textured than on smooth skin, and PSNR as a
second, plain-energy bound. A :class:`Budget` holds the two targets; :data:`PRESETS` names
three (``subtle``, the default, ``balanced``, ``strong``).

**Where the change goes** (:class:`CloakShape`): the attack optimises a free tensor ``z`` and
the cloak is ``delta = J * (luma(z) + chroma * colour(z))``, where

- ``J`` is a just-noticeable-difference (JND) map (:func:`jnd_map`): from the local luminance
  contrast (the SSIM tolerance ``sqrt(2 var + C2) / sqrt(C2)``: 1 on flat skin, larger on
  hair, brows, lashes, textured skin and edges) and the background luminance (the eye sees a
  step less well in dark and very bright areas: Chou and Li 1995), capped at ``jnd_max``;
- ``luma(z)`` moves R, G and B together (a grey-level change, which shows no colour);
- ``colour(z)`` moves the two colour-difference directions, scaled by ``chroma`` (0.25 by
  default: colour changes are what gathered into pink-and-green blotches) and high-passed
  (``chroma_lowfreq``: a Gaussian of ``lowfreq_sigma`` pixels at attack resolution is
  subtracted), so colour cannot form smooth, face-sized patterns; the grey-level part can be
  high-passed too (``lowfreq``, off by default: it cost protection and did not look better).

**Spending exactly the budget.** During the attack, :class:`BudgetProjector` scales the cloak
back onto the budget after each step (at attack resolution). At the end, :func:`fit_budget`
measures the real output (cloak enlarged to full size, masked, rounded to 8-bit levels, capped)
and finds by bisection, face by face, the largest scale of the cloak at which both bounds hold,
so the saved photo sits on the budget (within 0.001 SSIM / 0.05 dB), never above it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from facetrust.errors import InputError
from facetrust.names import DEFAULT_PROTECT_PRESET, PROTECT_PRESETS
from facetrust.protect.metrics import ssim_map

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "PRESET_NAMES",
    "Budget",
    "BudgetProjector",
    "CloakShape",
    "fit_budget",
    "jnd_map",
    "torch_ssim_map",
]

_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2  # SSIM constants for 8-bit data


@dataclass(frozen=True)
class Budget:
    """Face-region targets: SSIM at least ``ssim``, PSNR at least ``psnr`` dB."""

    ssim: float
    psnr: float

    def __post_init__(self) -> None:
        if isinstance(self.ssim, bool) or not isinstance(self.ssim, int | float):
            raise InputError(f"ssim must be a number in [0.5, 0.999], got {self.ssim!r}")
        if not 0.5 <= self.ssim <= 0.999:
            raise InputError(f"ssim must be in [0.5, 0.999], got {self.ssim}")
        if isinstance(self.psnr, bool) or not isinstance(self.psnr, int | float):
            raise InputError(f"psnr must be a number of dB in [20, 60], got {self.psnr!r}")
        if not 20.0 <= self.psnr <= 60.0:
            raise InputError(f"psnr must be in [20, 60] dB, got {self.psnr}")


#: The presets, by what a person sees (face-region targets; figures in README "Protection"),
#: in the order of :data:`facetrust.names.PROTECT_PRESETS` (least change first).
PRESETS: dict[str, Budget] = dict(
    zip(
        PROTECT_PRESETS,
        (Budget(ssim=0.97, psnr=33.0), Budget(ssim=0.95, psnr=31.0), Budget(ssim=0.93, psnr=29.0)),
        strict=True,
    )
)
PRESET_NAMES: tuple[str, ...] = PROTECT_PRESETS
DEFAULT_PRESET: str = DEFAULT_PROTECT_PRESET


# --- where the change goes ---------------------------------------------------------------------


def _gauss_kernel(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    r = max(1, math.ceil(3.0 * sigma))
    k = torch.arange(-r, r + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (k / sigma) ** 2)
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float, radius: int | None = None) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with reflected borders (replicated on images
    smaller than the kernel); ``radius`` fixes the kernel half-width (SSIM: 5)."""
    if radius is None:
        k = _gauss_kernel(sigma, x.dtype, x.device)
    else:
        t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
        k = torch.exp(-0.5 * (t / sigma) ** 2)
        k = k / k.sum()
    r = (k.numel() - 1) // 2
    c = x.shape[1]
    mode = "replicate" if r >= min(x.shape[-2:]) else "reflect"
    xp = F.pad(x, (r, r, r, r), mode=mode)
    xp = F.conv2d(xp, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(xp, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def torch_ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM ``(B, 1, H, W)`` of ``(B, C, H, W)`` images in [0, 1] (8-bit constants,
    11 x 11 Gaussian window of sigma 1.5, channels averaged): :func:`.metrics.ssim_map` in torch,
    differentiable."""
    if a.shape != b.shape or a.ndim != 4:
        raise InputError(
            f"SSIM needs two (B, C, H, W) tensors of one shape, got {a.shape}, {b.shape}"
        )
    a, b = a * 255.0, b * 255.0
    c = a.shape[1]
    moments = _blur(torch.cat([a, b, a * a, b * b, a * b], dim=1), 1.5, 5)  # one blur call
    mu_a, mu_b, ea2, eb2, eab = moments.split(c, dim=1)
    va = ea2 - mu_a**2
    vb = eb2 - mu_b**2
    cov = eab - mu_a * mu_b
    s = ((2 * mu_a * mu_b + _C1) * (2 * cov + _C2)) / ((mu_a**2 + mu_b**2 + _C1) * (va + vb + _C2))
    return s.mean(dim=1, keepdim=True)


def _background_jnd(lum: torch.Tensor) -> torch.Tensor:
    """Chou and Li (1995): visibility threshold of a step on a background of luminance ``lum``
    (0-255): high in the dark, lowest (3 levels) at mid grey, rising slowly towards white."""
    dark = 17.0 * (1.0 - torch.sqrt(lum.clamp(0, 127) / 127.0)) + 3.0
    bright = 3.0 / 128.0 * (lum - 127.0) + 3.0
    return torch.where(lum <= 127.0, dark, bright)


def jnd_map(x: torch.Tensor, jnd_max: float = 4.0, power: float = 1.0) -> torch.Tensor:
    """Relative just-noticeable difference ``(B, 1, H, W)`` of ``(B, 3, H, W)`` images in [0, 1]:
    1 on flat mid-grey areas, up to ``jnd_max`` in textured, dark or bright ones.

    ``texture = sqrt(2 var + C2) / sqrt(C2)`` with ``var`` the local luminance variance (the
    Gaussian window SSIM uses): adding noise of variance ``n`` to a pixel costs SSIM about
    ``n / (2 var + C2)``, so a change scaled by ``texture`` costs the same SSIM everywhere.
    ``luminance = sqrt(jnd_bg(mean) / 3)`` (Chou and Li's background-luminance threshold,
    softened). The map is ``min(jnd_max, texture * luminance) ** power``; ``power = 0`` spreads
    the change evenly.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise InputError(f"jnd_map needs (B, 3, H, W) images, got {tuple(x.shape)}")
    lum = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]) * 255.0
    mu = _blur(lum, 1.5, 5)
    var = (_blur(lum * lum, 1.5, 5) - mu * mu).clamp_min(0)
    texture = torch.sqrt(2 * var + _C2) / math.sqrt(_C2)
    luminance = torch.sqrt(_background_jnd(mu) / 3.0)
    return (texture * luminance).clamp(1.0, jnd_max) ** power


_GREY = torch.tensor([1.0, 1.0, 1.0]) / math.sqrt(3.0)
_COLOUR = torch.stack(
    [
        torch.tensor([1.0, -1.0, 0.0]) / math.sqrt(2.0),
        torch.tensor([1.0, 1.0, -2.0]) / math.sqrt(6.0),
    ]
)


@dataclass(frozen=True)
class CloakShape:
    """How a free tensor becomes a cloak (see the module docstring).

    ``chroma``: weight of the colour-difference components (0: grey-level change only);
    ``lowfreq`` and ``chroma_lowfreq``: fraction of the grey-level and of the colour
    components' low-frequency part removed (0: none, 1: a pure high-pass); by default the
    colour change loses all of it (no colour blotches) and the grey-level change keeps it
    (it survives JPEG and resizing, and smooth shading is what SSIM and the eye forgive most);
    ``lowfreq_sigma``: that low-pass Gaussian, pixels at attack resolution;
    ``jnd_max`` and ``jnd_power``: the JND map's cap and exponent (``jnd_power=0``: no JND).
    """

    chroma: float = 0.25
    lowfreq: float = 0.0
    chroma_lowfreq: float = 1.0
    lowfreq_sigma: float = 3.0
    jnd_max: float = 2.0
    jnd_power: float = 1.0

    def __post_init__(self) -> None:
        for name, lo, hi in (
            ("chroma", 0.0, 1.0),
            ("lowfreq", 0.0, 1.0),
            ("chroma_lowfreq", 0.0, 1.0),
            ("lowfreq_sigma", 0.5, 32.0),
            ("jnd_max", 1.0, 16.0),
            ("jnd_power", 0.0, 2.0),
        ):
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise InputError(f"CloakShape.{name} must be in [{lo}, {hi}], got {v}")

    def weights(self, reference: torch.Tensor) -> torch.Tensor:
        """The JND map of ``reference`` ``(1, 3, S, S)`` (computed once per face)."""
        return jnd_map(reference, self.jnd_max, self.jnd_power)

    def __call__(self, z: torch.Tensor, jnd: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` free tensor -> ``(B, 3, S, S)`` RGB cloak (linear in ``z``)."""
        luma, chroma = z[:, :1], z[:, 1:]
        if self.lowfreq > 0:
            luma = luma - self.lowfreq * _blur(luma, self.lowfreq_sigma)
        rgb = luma * _GREY.to(z).view(1, 3, 1, 1)
        if self.chroma > 0:
            if self.chroma_lowfreq > 0:
                chroma = chroma - self.chroma_lowfreq * _blur(chroma, self.lowfreq_sigma)
            rgb = rgb + self.chroma * torch.einsum("bkhw,kc->bchw", chroma, _COLOUR.to(z))
        return jnd * rgb


# --- spending the budget -----------------------------------------------------------------------


class BudgetProjector:
    """Scale a cloak onto a :class:`Budget` at attack resolution.

    Args:
        reference: ``(1, 3, S, S)`` original crop in [0, 1].
        region: ``(1, 1, S, S)`` bool, the face region (mask >= 0.5) in the crop.
        budget: the targets.
    """

    def __init__(self, reference: torch.Tensor, region: torch.Tensor, budget: Budget) -> None:
        self.reference = reference.detach().float()
        self.region = region.bool()
        if not bool(self.region.any()):  # a face too small for a half-weight pixel: all counts
            self.region = torch.ones_like(self.region)
        self.budget = budget
        self._n = float(self.region.sum()) * 3

    @torch.no_grad()
    def measure(self, masked_delta: torch.Tensor) -> tuple[float, float]:
        """Face-region ``(ssim, psnr)`` of ``reference + masked_delta`` (clipped to [0, 1])."""
        adv = (self.reference + masked_delta).clamp(0, 1)
        err = ((adv - self.reference) * 255.0) ** 2
        mse = float((err * self.region).sum()) / self._n
        p = math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
        s = float(torch_ssim_map(self.reference, adv)[self.region].mean())
        return s, p

    def scale(self, masked_delta: torch.Tensor, iterations: int = 2) -> float:
        """The factor ``s`` at which ``s * masked_delta`` meets the budget with the binding bound
        about equal (``1 - SSIM`` and the MSE both grow about as ``s**2``)."""
        s = 1.0
        for _ in range(iterations):
            ss, ps = self.measure(s * masked_delta)
            if math.isinf(ps):
                return 1.0 if s == 1.0 else s
            k_ssim = math.sqrt((1.0 - self.budget.ssim) / max(1.0 - ss, 1e-12))
            k_psnr = 10 ** ((ps - self.budget.psnr) / 20.0)
            k = min(k_ssim, k_psnr)
            s *= k
            if abs(k - 1.0) < 0.005:
                break
        return s


def _measure(
    original: np.ndarray, image: np.ndarray, region: np.ndarray, box: tuple[int, int, int, int]
) -> tuple[float, float]:
    """Face-region ``(ssim, psnr)`` in the window ``box`` (the region's bounding box grown by
    the SSIM window, so every region pixel sees its whole neighbourhood)."""
    x0, y0, x1, y1 = box
    a, b = original[y0:y1, x0:x1], image[y0:y1, x0:x1]
    r = region[y0:y1, x0:x1]
    diff = a[r].astype(np.float64) - b[r].astype(np.float64)
    mse = float(np.mean(diff**2)) if diff.size else 0.0
    p = math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
    s = float(ssim_map(a, b)[r].mean()) if min(a.shape[:2]) >= 11 else 1.0
    return s, p


def _region_box(region: np.ndarray, pad: int = 10) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(region)
    h, w = region.shape
    return (
        max(0, int(xs.min()) - pad),
        max(0, int(ys.min()) - pad),
        min(w, int(xs.max()) + 1 + pad),
        min(h, int(ys.max()) + 1 + pad),
    )


def _compose(warped: np.ndarray, perts: Sequence[np.ndarray], scales: Sequence[float], levels: int):
    total = np.zeros(warped.shape, np.float32)
    for p, s in zip(perts, scales, strict=True):
        if s:
            total += np.float32(s) * p
    d8 = np.clip(np.rint(total * 255.0), -levels, levels).astype(np.int16)
    return np.clip(warped.astype(np.int16) + d8, 0, 255).astype(np.uint8)


def _meets(m: tuple[float, float], budget: Budget) -> bool:
    return m[0] >= budget.ssim and m[1] >= budget.psnr


def fit_budget(
    original: np.ndarray,
    warped: np.ndarray,
    perts: Sequence[np.ndarray],
    regions: Sequence[np.ndarray],
    budget: Budget,
    eps: float,
    max_scale: float = 16.0,
) -> tuple[np.ndarray, list[float], list[tuple[float, float]]]:
    """Spend exactly ``budget`` on each face, measured on the real 8-bit output.

    Args:
        original: ``(H, W, 3)`` uint8, the photo (or the window of it) before any change.
        warped: the same after the warp (``original`` when there is none).
        perts: per face, the cloak at full resolution, masked, in [0, 1] units ``(H, W, 3)``.
        regions: per face, its face region ``(H, W)`` bool.
        eps: L-infinity cap of the summed cloak ([0, 1] units), applied after rounding.
        max_scale: largest factor a cloak may be enlarged by (the attack's budget at attack
            resolution is an estimate of the full-resolution one; a cloak attacked at 64 px and
            enlarged 2.3x needed 4.7x in a test, so a cap of 4 left large faces under budget).
    Returns:
        ``(image, scales, figures)``: the cloaked uint8 image, each face's scale and its final
        face-region ``(ssim, psnr)``. Each face's scale is the largest (to 1/2**14 of the
        search range) at which its face region keeps both bounds.
    """
    levels = max(1, math.floor(eps * 255 + 1e-6))
    n = len(perts)
    boxes = [_region_box(r) if r.any() else (0, 0, 0, 0) for r in regions]
    scales = [0.0] * n
    for k in range(n):
        if not regions[k].any() or not np.any(perts[k]):
            continue
        lo, hi = 0.0, max_scale  # past the cap, more scale still fills the capped pixels

        def ok(s: float, k: int = k) -> bool:
            trial = list(scales)
            trial[k] = s
            img = _compose(warped, perts, trial, levels)
            return _meets(_measure(original, img, regions[k], boxes[k]), budget)

        if ok(hi):
            lo = hi
        else:
            for _ in range(14):
                mid = 0.5 * (lo + hi)
                if ok(mid):
                    lo = mid
                else:
                    hi = mid
        scales[k] = lo
    # faces whose masks overlap can push each other over: shrink until every face holds
    for _ in range(50):
        img = _compose(warped, perts, scales, levels)
        figures = [
            _measure(original, img, r, b) if r.any() else (1.0, math.inf)
            for r, b in zip(regions, boxes, strict=True)
        ]
        bad = [k for k, m in enumerate(figures) if not _meets(m, budget) and scales[k] > 0]
        if not bad:
            break
        for k in bad:
            scales[k] *= 0.97
    return img, scales, figures
