"""Expectation over transformation (EoT): an explicit distribution of image transforms.

Each PGD step draws fresh transforms from :class:`EoT` with a ``torch.Generator`` and averages
the gradient over them, so the cloak is optimised for what happens to a photo after it is
posted: re-scaled, cropped, blurred and re-compressed. Nothing relies on model randomness.

One draw (:class:`TransformSample`) applies, in this order and each with its own probability:

1. ``flip``: mirror left-right;
2. ``rotate``: rotate about the centre by up to ``rotate`` degrees either way (border pixels
   replicate): recognizers align faces their own way, and a cloak that only works at the pose
   it was made at transfers worse to them;
3. ``shift``: crop a window of ``zoom`` x the side at an offset of up to ``shift`` x the side
   and resize it back (a small crop and translation; border pixels replicate);
4. ``resize``: down-scale by a factor in ``resize`` (e.g. 0.5-1.0, anti-aliased) and back up;
5. ``blur``: Gaussian blur with sigma in ``blur_sigma`` pixels;
6. ``jpeg``: differentiable JPEG at a quality in ``jpeg_quality``.

All transforms are differentiable and keep the ``(B, 3, H, W)`` shape and the [0, 1] range.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from facetrust.errors import InputError
from facetrust.protect.jpeg import diff_jpeg

__all__ = ["EoT", "EoTConfig", "TransformSample"]


@dataclass(frozen=True)
class EoTConfig:
    """The transform distribution. Probabilities are per draw; ranges are inclusive."""

    # flip and rotation are not what happens to a posted photo; they vary the view the way other
    # recognizers' alignment does, which carries the cloak over to them (60-photo benchmark:
    # dlib distance 0.660 -> 0.679 at equal PSNR, README "Protection")
    p_flip: float = 0.5
    p_rotate: float = 1.0
    rotate: float = 10.0  # max angle either way, degrees
    p_shift: float = 0.5
    shift: float = 0.04  # max offset, fraction of the side
    zoom: tuple[float, float] = (0.9, 1.0)  # crop window side, fraction of the side
    p_resize: float = 0.5
    resize: tuple[float, float] = (0.5, 1.0)
    p_blur: float = 0.3
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    p_jpeg: float = 0.5
    jpeg_quality: tuple[float, float] = (50.0, 95.0)

    def __post_init__(self) -> None:
        for name in ("p_flip", "p_rotate", "p_shift", "p_resize", "p_blur", "p_jpeg"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise InputError(f"EoTConfig.{name} must be a probability in [0, 1], got {v}")
        if not 0.0 <= self.rotate <= 45.0:
            raise InputError(f"EoTConfig.rotate must be in [0, 45] degrees, got {self.rotate}")
        if not 0.0 <= self.shift <= 0.25:
            raise InputError(f"EoTConfig.shift must be in [0, 0.25], got {self.shift}")
        _check_range("zoom", self.zoom, 0.5, 1.0)
        _check_range("resize", self.resize, 0.1, 1.0)
        _check_range("blur_sigma", self.blur_sigma, 0.0, 5.0)
        _check_range("jpeg_quality", self.jpeg_quality, 1.0, 100.0)

    @classmethod
    def none(cls) -> EoTConfig:
        """No transforms at all (plain PGD)."""
        return cls(p_flip=0.0, p_rotate=0.0, p_shift=0.0, p_resize=0.0, p_blur=0.0, p_jpeg=0.0)

    def to_dict(self) -> dict:
        return asdict(self)


def _check_range(name: str, r: tuple[float, float], lo: float, hi: float) -> None:
    if len(r) != 2 or not (lo <= r[0] <= r[1] <= hi):
        raise InputError(f"EoTConfig.{name} must be (low, high) with {lo} <= low <= high <= {hi}")


@dataclass(frozen=True)
class TransformSample:
    """One draw from the distribution; ``None`` means the transform is off in this draw."""

    shift: tuple[float, float, float] | None = None  # (zoom, dx, dy), fractions of the side
    resize: float | None = None
    blur_sigma: float | None = None
    jpeg_quality: float | None = None
    flip: bool | None = None
    rotate: float | None = None  # degrees, counter-clockwise

    @property
    def names(self) -> tuple[str, ...]:
        """The transforms this draw applies, in order."""
        return tuple(
            n
            for n, v in (
                ("flip", self.flip),
                ("rotate", self.rotate),
                ("shift", self.shift),
                ("resize", self.resize),
                ("blur", self.blur_sigma),
                ("jpeg", self.jpeg_quality),
            )
            if v is not None
        )


class EoT:
    """Sample and apply transforms from an :class:`EoTConfig`.

    >>> eot = EoT(EoTConfig())
    >>> g = torch.Generator().manual_seed(0)
    >>> t = eot.sample(g)
    >>> y = eot.apply(torch.rand(1, 3, 64, 64), t)
    """

    def __init__(self, config: EoTConfig | None = None) -> None:
        self.config = config or EoTConfig()

    def __repr__(self) -> str:
        return f"EoT({self.config})"

    def sample(self, generator: torch.Generator) -> TransformSample:
        """Draw one set of transforms."""
        c = self.config

        def u(lo: float, hi: float) -> float:
            return lo + (hi - lo) * float(torch.rand((), generator=generator))

        def on(p: float) -> bool:
            return float(torch.rand((), generator=generator)) < p

        flip = True if on(c.p_flip) else None
        angle = u(-c.rotate, c.rotate) if on(c.p_rotate) else None
        shift = None
        if on(c.p_shift):
            zoom = u(*c.zoom)
            shift = (zoom, u(-c.shift, c.shift), u(-c.shift, c.shift))
        resize = u(*c.resize) if on(c.p_resize) else None
        sigma = u(*c.blur_sigma) if on(c.p_blur) else None
        quality = round(u(*c.jpeg_quality)) if on(c.p_jpeg) else None
        return TransformSample(
            shift=shift,
            resize=resize,
            blur_sigma=sigma,
            jpeg_quality=None if quality is None else float(quality),
            flip=flip,
            rotate=angle,
        )

    def sample_many(self, n: int, generator: torch.Generator) -> list[TransformSample]:
        return [self.sample(generator) for _ in range(n)]

    def apply(self, x: torch.Tensor, t: TransformSample) -> torch.Tensor:
        """Apply draw ``t`` to ``x`` ``(B, 3, H, W)`` in [0, 1]; same shape out."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"EoT needs (B, 3, H, W) images, got {tuple(x.shape)}")
        if t.flip:
            x = x.flip(-1)
        if t.rotate is not None:
            x = rotate(x, t.rotate)
        if t.shift is not None:
            x = crop_shift(x, *t.shift)
        if t.resize is not None:
            x = resize_down_up(x, t.resize)
        if t.blur_sigma is not None:
            x = gaussian_blur(x, t.blur_sigma)
        if t.jpeg_quality is not None:
            x = diff_jpeg(x, t.jpeg_quality)
        return x

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.sample(generator))


def crop_shift(x: torch.Tensor, zoom: float, dx: float, dy: float) -> torch.Tensor:
    """Resample the window of side ``zoom`` centred at ``(dx, dy)`` (fractions of the side)."""
    return _affine(x, [[zoom, 0.0, 2.0 * dx], [0.0, zoom, 2.0 * dy]])


def _affine(x: torch.Tensor, theta: list[list[float]]) -> torch.Tensor:
    """Resample ``x`` through the 2x3 ``affine_grid`` matrix ``theta`` (bilinear, borders
    replicate)."""
    t = torch.tensor(theta, dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(t, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate about the centre by ``degrees`` (counter-clockwise; bilinear, borders replicate)."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    h, w = x.shape[-2:]
    # affine_grid works in [-1, 1] on both axes: scale the off-diagonal terms by the aspect
    return _affine(x, [[c, -s * h / w, 0.0], [s * w / h, c, 0.0]])


def resize_down_up(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Down-scale by ``scale`` (anti-aliased bilinear) and back to the original size."""
    h, w = x.shape[-2:]
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    if (sh, sw) == (h, w):
        return x
    small = F.interpolate(x, size=(sh, sw), mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur, radius ``ceil(3 sigma)``, reflected borders."""
    if sigma <= 0:
        return x
    r = max(1, math.ceil(3.0 * sigma))
    k = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (k / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    pad = min(r, x.shape[-1] - 1, x.shape[-2] - 1)
    if pad < r:  # tiny images: fall back to replicate padding
        xp = F.pad(x, (r, r, r, r), mode="replicate")
    else:
        xp = F.pad(x, (r, r, r, r), mode="reflect")
    xp = F.conv2d(xp, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(xp, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
