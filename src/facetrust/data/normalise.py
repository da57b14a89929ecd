"""One normalisation for every training image, whatever its label.

Reals, fakes and pseudo-fakes all go through the same random re-encode, so that image size,
sharpness and codec cannot tell the classes apart (in our data small upscaled reals and large
sharp fakes make sharpness alone a class cue). This follows "Fake or JPEG? Revealing Common
Biases in Generated Image Detection Datasets" (Grommelt et al., 2024: re-encoding both classes
alike gains ~11 points cross-generator) and B-Free (Guillaro et al., CVPR 2025: the same
random crop, resize and compression on both classes of content-aligned pairs).

The chain, applied with probability ``p`` (otherwise the image is only resized to ``size``)::

    crop (any side) -> down to side s * size, s ~ U(scale), filter ~ down_filters
                    -> JPEG at quality q ~ U{quality}
                    -> up to size x size, filter ~ up_filters

``Normaliser.draw(rng)`` returns the drawn ``Reencode`` and ``Normaliser.apply(image, params)``
applies it, so a real and its content-aligned twin can share the very same re-encode.

Trade-off: the lower ``scale`` goes, the less a sharp fake can be told from a small upscaled
real, and the more of the high-frequency evidence (blending boundaries, up-sampling traces)
is lost; ``scale`` up to 1 keeps that evidence but lets sharpness leak the label when the reals
of a source are upscaled. Up-sampling traces at a period of ``f`` pixels survive only a
downscale to ``s > 1 / f`` of the side, so make ``trace`` pseudo-fakes *after* normalising
their real (see docs/pseudo-fakes.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facetrust.errors import InputError

__all__ = ["FILTERS", "Normaliser", "Reencode"]

#: Resampling filters by name (OpenCV). ``area`` is the anti-aliased box filter of downscaling.
FILTERS: dict[str, int] = {
    "nearest": cv2.INTER_NEAREST,
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}


@dataclass(frozen=True)
class Reencode:
    """One drawn re-encode: ``apply`` is the whole chain, else only the resize to the side.

    Attributes:
        apply: whether the down/JPEG/up chain runs (drawn with probability ``p``).
        scale: side of the downscaled image as a fraction of the output side.
        down, up: filter names (keys of ``FILTERS``).
        quality: JPEG quality (``None``: no JPEG step).
    """

    apply: bool
    scale: float = 1.0
    down: str = "area"
    quality: int | None = None
    up: str = "linear"


def _check_image(image: object) -> np.ndarray:
    if not (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
        and min(image.shape[:2]) >= 1
    ):
        got = getattr(image, "dtype", type(image).__name__), getattr(image, "shape", None)
        raise InputError(f"expected a uint8 (H, W, 3) RGB image, got {got[0]} {got[1]}")
    return image


def _resize(image: np.ndarray, size: tuple[int, int], filt: str) -> np.ndarray:
    """Resize to ``(H, W)``; a no-op when the size already matches."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    return cv2.resize(image, (w, h), interpolation=FILTERS[filt])


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise InputError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


class Normaliser:
    """The same random downscale + JPEG + upscale for every image (see the module docstring).

    Args:
        size: output side in pixels; ``None`` keeps each input's own ``(H, W)``.
        scale: ``(lo, hi)`` side of the downscaled image, a fraction of the output side, in
            ``(0, 1]``.
        quality: ``(lo, hi)`` JPEG quality range, integers in ``[1, 100]``, both inclusive.
        down_filters, up_filters: filter names drawn uniformly (``FILTERS``).
        p: probability of the down/JPEG/up chain; otherwise only the resize to ``size``
            (with ``resize_filter``).
        resize_filter: filter of the plain resize when the chain is skipped.
        seed: seeds the generator used when a call gets no ``rng``.

    Call: ``normaliser(image, rng=None)`` with a uint8 ``(H, W, 3)`` RGB crop and an
    ``np.random.Generator``, an int seed, or ``None`` (the normaliser's own seeded generator);
    returns a uint8 ``(size, size, 3)`` image (``(H, W, 3)`` when ``size`` is ``None``).
    """

    def __init__(
        self,
        size: int | None = 256,
        scale: tuple[float, float] = (0.3, 0.5),
        quality: tuple[int, int] = (50, 95),
        down_filters: tuple[str, ...] = ("area", "linear", "cubic", "lanczos"),
        up_filters: tuple[str, ...] = ("linear", "cubic", "lanczos"),
        p: float = 1.0,
        resize_filter: str = "area",
        seed: int | None = None,
    ) -> None:
        if size is not None and (not isinstance(size, int | np.integer) or size < 8):
            raise InputError(f"size must be an int >= 8 or None, got {size!r}")
        lo, hi = (float(v) for v in scale)
        if not 0.0 < lo <= hi <= 1.0:
            raise InputError(f"scale must be (lo, hi) with 0 < lo <= hi <= 1, got {scale}")
        qlo, qhi = (int(v) for v in quality)
        if not 1 <= qlo <= qhi <= 100:
            raise InputError(f"quality must be (lo, hi) with 1 <= lo <= hi <= 100: {quality}")
        for name, filters in (("down_filters", down_filters), ("up_filters", up_filters)):
            bad = [f for f in filters if f not in FILTERS]
            if not filters or bad:
                raise InputError(f"{name}: unknown filters {bad}; use {', '.join(FILTERS)}")
        if resize_filter not in FILTERS:
            raise InputError(f"resize_filter {resize_filter!r}: use {', '.join(FILTERS)}")
        if not 0.0 <= float(p) <= 1.0:
            raise InputError(f"p must be in [0, 1], got {p}")
        self.size = None if size is None else int(size)
        self.scale = (lo, hi)
        self.quality = (qlo, qhi)
        self.down_filters = tuple(down_filters)
        self.up_filters = tuple(up_filters)
        self.p = float(p)
        self.resize_filter = resize_filter
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return (
            f"Normaliser(size={self.size}, scale={self.scale}, quality={self.quality}, "
            f"down_filters={self.down_filters}, up_filters={self.up_filters}, p={self.p}, "
            f"resize_filter={self.resize_filter!r}, seed={self.seed})"
        )

    def _generator(self, rng: np.random.Generator | int | None) -> np.random.Generator:
        if rng is None:
            return self._rng
        if isinstance(rng, np.random.Generator):
            return rng
        if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
            return np.random.default_rng(int(rng))
        raise InputError(f"rng must be a numpy Generator, an int seed or None, got {rng!r}")

    def draw(self, rng: np.random.Generator | int | None = None) -> Reencode:
        """Draw one re-encode (to apply the same one to a real and its twin)."""
        g = self._generator(rng)
        if g.random() >= self.p:
            return Reencode(apply=False)
        return Reencode(
            apply=True,
            scale=float(g.uniform(*self.scale)),
            down=str(self.down_filters[int(g.integers(len(self.down_filters)))]),
            quality=int(g.integers(self.quality[0], self.quality[1] + 1)),
            up=str(self.up_filters[int(g.integers(len(self.up_filters)))]),
        )

    def apply(self, image: np.ndarray, params: Reencode) -> np.ndarray:
        """Apply a drawn re-encode to a uint8 ``(H, W, 3)`` RGB image."""
        _check_image(image)
        out_hw = (self.size, self.size) if self.size is not None else image.shape[:2]
        if not params.apply:
            out = _resize(image, out_hw, self.resize_filter)
            return out.copy() if out is image else np.ascontiguousarray(out)
        h, w = out_hw
        small_hw = (max(1, round(h * params.scale)), max(1, round(w * params.scale)))
        small = _resize(image, small_hw, params.down)
        if params.quality is not None:
            small = _jpeg(small, params.quality)
        return np.ascontiguousarray(_resize(small, out_hw, params.up))

    def __call__(
        self, image: np.ndarray, rng: np.random.Generator | int | None = None
    ) -> np.ndarray:
        _check_image(image)
        return self.apply(image, self.draw(rng))
