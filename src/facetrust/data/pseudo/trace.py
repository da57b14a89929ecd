"""``trace``: generator up-sampling traces on a real face, content-aligned with it.

GAN and diffusion decoders build images by up-sampling (nearest or bilinear interpolation,
transposed convolutions, pixel shuffle), and the correlations those operations leave between
neighbouring pixels carry over between generators (NPR, Tan et al., CVPR 2024; the checkerboard
of transposed convolutions: Odena et al., Distill 2016). B-Free (Guillaro et al., CVPR 2025)
trains on fakes made from the very reals they are paired with, so that content cannot tell the
classes apart. Here a real crop is downscaled by ``factor`` (2 or 4, area filter) and up-sampled
back by one of

- ``nearest``: pixel replication (blocks of ``factor`` x ``factor``);
- ``bilinear``: linear interpolation (OpenCV, pixel-centre aligned);
- ``transposed``: a depthwise transposed convolution (stride ``factor``, kernel
  ``2 * factor``) whose kernel is the bilinear one with each tap multiplied by
  ``1 + s * N(0, 1)``, ``s`` drawn from ``strength``: the phases no longer sum to one, so a
  periodic gain pattern (checkerboard) of period ``factor`` appears;
- ``pixel_shuffle``: ``factor**2`` random 3x3 filters (each the sub-pixel bilinear kernel of
  its phase plus noise of scale ``s`` and a gain of ``1 + s/4 * N(0, 1)``) applied to the small
  image and interleaved (sub-pixel convolution).

The fake keeps the real's content (equal at low frequencies); the returned map is the trace
``|fake - real|`` averaged over channels, / 255.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facetrust.data.pseudo.registry import PseudoFakeMaker, as_generator, register_pseudo_fake
from facetrust.data.sbi import _check_image
from facetrust.errors import InputError

__all__ = ["TRACE_OPS", "Trace", "TraceConfig", "upsample_trace"]

TRACE_OPS = ("nearest", "bilinear", "transposed", "pixel_shuffle")


@dataclass(frozen=True)
class TraceConfig:
    """Settings of ``upsample_trace``.

    Attributes:
        ops: up-sampling operations drawn uniformly (repeats weight one), from ``TRACE_OPS``.
        factors: up-sampling factors drawn uniformly; even integers >= 2.
        strength: ``(lo, hi)`` range of the kernel noise scale ``s`` (transposed, pixel_shuffle).
    """

    ops: tuple[str, ...] = TRACE_OPS
    factors: tuple[int, ...] = (2, 4)
    strength: tuple[float, float] = (0.03, 0.15)

    def __post_init__(self) -> None:
        bad = [o for o in self.ops if o not in TRACE_OPS]
        if not self.ops or bad:
            raise InputError(f"unknown trace ops {bad}: use {', '.join(TRACE_OPS)}")
        if not self.factors or not all(int(f) == f and f >= 2 and f % 2 == 0 for f in self.factors):
            raise InputError(f"factors must be even integers >= 2: {self.factors}")
        lo, hi = self.strength
        if not 0.0 <= lo <= hi <= 1.0:
            raise InputError(f"strength must be (lo, hi) with 0 <= lo <= hi <= 1: {self.strength}")


def _bilinear_1d(f: int) -> np.ndarray:
    """The length-``2f`` transposed-convolution kernel of bilinear up-sampling by ``f``."""
    centre = f - 0.5
    return 1.0 - np.abs(np.arange(2 * f) - centre) / f


def _transposed(small: np.ndarray, f: int, s: float, rng: np.random.Generator) -> np.ndarray:
    """Depthwise transposed convolution, stride ``f``, random kernel; output ``f`` x larger."""
    import torch
    import torch.nn.functional as F

    base = np.outer(_bilinear_1d(f), _bilinear_1d(f))
    kernels = np.stack([base * (1 + s * rng.standard_normal(base.shape)) for _ in range(3)])
    kernels *= f * f / kernels.sum(axis=(1, 2), keepdims=True)  # keep the mean brightness
    h, w = small.shape[:2]
    x = np.pad(small, ((1, 1), (1, 1), (0, 0)), mode="edge").transpose(2, 0, 1)[None]
    with torch.no_grad():
        y = F.conv_transpose2d(
            torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            torch.from_numpy(kernels[:, None].astype(np.float32)),
            stride=f,
            groups=3,
        )[0].numpy()
    # padded sample j = i + 1 lands centred at j*f + f - 0.5; the real pixel i is centred at
    # i*f + f/2 - 0.5 in the full-size image: crop from 1.5 f
    off = 3 * f // 2
    return y[:, off : off + h * f, off : off + w * f].transpose(1, 2, 0)


def _pixel_shuffle(small: np.ndarray, f: int, s: float, rng: np.random.Generator) -> np.ndarray:
    """``f * f`` random 3x3 sub-pixel filters of ``small``, interleaved."""
    h, w = small.shape[:2]
    out = np.empty((h * f, w * f, 3), np.float32)
    for py in range(f):
        for px in range(f):
            taps = []
            for p in (py, px):
                d = (p + 0.5) / f - 0.5  # sub-pixel offset of this phase, in small pixels
                t = np.zeros(3)
                t[1] = 1 - abs(d)
                t[2 if d > 0 else 0] = abs(d)
                taps.append(t)
            k = np.outer(taps[0], taps[1]) + s * rng.standard_normal((3, 3)) / 3
            k *= (1 + s / 4 * rng.standard_normal()) / k.sum()
            out[py::f, px::f] = cv2.filter2D(
                small, -1, k.astype(np.float32), borderType=cv2.BORDER_REFLECT_101
            )
    return out


def upsample_trace(
    image: np.ndarray,
    rng: np.random.Generator | int | None = None,
    cfg: TraceConfig | None = None,
    *,
    op: str | None = None,
    factor: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-make a real crop through a generator-like up-sampling chain.

    Args:
        image: ``(H, W, 3)`` uint8 RGB real face crop.
        rng: a numpy Generator or an int seed.
        cfg: settings; default ``TraceConfig()``.
        op, factor: force one operation / factor; default drawn from ``cfg``.
    Returns:
        ``(fake, trace)``: uint8 ``(H, W, 3)`` and float32 ``(H, W)`` in [0, 1],
        ``|fake - image|`` averaged over channels / 255.
    """
    cfg = cfg or TraceConfig()
    g = as_generator(rng)
    _check_image(image)
    if op is None:
        op = str(cfg.ops[int(g.integers(len(cfg.ops)))])
    elif op not in TRACE_OPS:
        raise InputError(f"unknown trace op {op!r}: use {', '.join(TRACE_OPS)}")
    f = int(cfg.factors[int(g.integers(len(cfg.factors)))]) if factor is None else int(factor)
    if f < 2 or f % 2:
        raise InputError(f"factor must be an even integer >= 2, got {factor}")
    h, w = image.shape[:2]
    if min(h, w) < 2 * f:
        raise InputError(f"image {h}x{w} is too small for up-sampling by {f}")
    s = float(g.uniform(*cfg.strength))

    real = image.astype(np.float32)
    sh, sw = -(-h // f), -(-w // f)
    padded = cv2.copyMakeBorder(real, 0, sh * f - h, 0, sw * f - w, cv2.BORDER_REFLECT_101)
    small = cv2.resize(padded, (sw, sh), interpolation=cv2.INTER_AREA)
    if op == "nearest":
        up = np.repeat(np.repeat(small, f, axis=0), f, axis=1)
    elif op == "bilinear":
        up = cv2.resize(small, (sw * f, sh * f), interpolation=cv2.INTER_LINEAR)
    elif op == "transposed":
        up = _transposed(small, f, s, g)
    else:
        up = _pixel_shuffle(small, f, s, g)
    fake = np.clip(np.rint(up[:h, :w]), 0, 255).astype(np.uint8)
    trace = np.abs(fake.astype(np.float32) - real).mean(axis=2) / 255.0
    return fake, trace.astype(np.float32)


@register_pseudo_fake
class Trace(PseudoFakeMaker):
    """Up-sampling traces on a real; settings: :class:`TraceConfig`."""

    name = "trace"
    config_class = TraceConfig

    def make(
        self,
        image: np.ndarray,
        landmarks: np.ndarray | None,
        rng: np.random.Generator,
        donor: np.ndarray | None,
        donor_landmarks: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        return upsample_trace(image, rng, self.cfg)
