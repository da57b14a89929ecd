"""Image transforms for detector training and evaluation (albumentations 2.x).

``train_transform(size, strength)`` and ``eval_transform(size)`` build an ``ImageTransform``:
configured once, called on a uint8 ``(H, W, 3)`` face crop of any size, returning a uint8
``(size, size, 3)`` image. The albumentations pipeline is exposed as ``.pipeline`` and listed by
``.describe()``.

Why a "resolution equaliser": in our data small, upscaled reals and large, sharp fakes make
sharpness alone a class cue (image size separates classes at 0.70 AUC). With probability
``0.5 * strength`` the crop is resized down to a random side in ``[64, size]`` and back up, so
that blur is seen on both classes and cannot tell them apart.

Randomness: albumentations 2.x draws from generators held by each transform, independent of
``np.random`` / ``random``. ``Compose(seed=...)`` gives *every* transform a generator built from
the same seed, so their draws are correlated; ``ImageTransform`` instead makes all transforms
share one generator (``set_random_state``), seeded from ``seed``. In a forked ``DataLoader``
worker the transform reseeds itself on its first call from the worker's seed (which torch
derives from its own seeding, differs per worker and per epoch), so workers do not repeat each
other's augmentations.
"""

from __future__ import annotations

import os
import random
from typing import Any

import albumentations as A
import cv2
import numpy as np

from facetrust.errors import InputError

__all__ = ["ImageTransform", "ResolutionEqualizer", "eval_transform", "train_transform"]

MIN_SIDE = 64  # smallest side the resolution equaliser resizes down to


class ResolutionEqualizer(A.ImageOnlyTransform):
    """Resize down to a random square side in ``[min_side, max_side]`` and back up.

    ``max_side=None`` uses the image's own side. Downscaling uses INTER_AREA, upscaling
    INTER_LINEAR, as a small real crop upscaled by a data pipeline would look.
    """

    class InitSchema(A.ImageOnlyTransform.InitSchema):
        min_side: int
        max_side: int | None

    def __init__(self, min_side: int = MIN_SIDE, max_side: int | None = None, p: float = 0.5):
        super().__init__(p=p)
        self.min_side = min_side
        self.max_side = max_side

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict:
        h, w = params["shape"][:2]
        hi = min(h, w) if self.max_side is None else min(self.max_side, h, w)
        lo = min(self.min_side, hi)
        return {"side": self.py_random.randint(lo, hi)}

    def apply(self, img: np.ndarray, side: int = 0, **params: Any) -> np.ndarray:
        h, w = img.shape[:2]
        if side <= 0 or side >= min(h, w):
            return img
        small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("min_side", "max_side")


class ImageTransform:
    """A configured image transform: uint8 ``(H, W, 3)`` in, uint8 ``(size, size, 3)`` out.

    Attributes:
        pipeline: the composed ``A.Compose``.
        size, strength, seed: as configured.
    """

    def __init__(
        self, pipeline: A.Compose, size: int, strength: float, name: str, seed: int | None = None
    ) -> None:
        self.pipeline = pipeline
        self.size = size
        self.strength = strength
        self.name = name
        self.reseed(seed)

    def reseed(self, seed: int | None) -> None:
        """Restart the random stream: the same seed gives the same sequence of outputs."""
        self.seed = seed
        ss = np.random.SeedSequence(seed)
        gen = np.random.default_rng(ss)
        py = random.Random(int(ss.generate_state(1, dtype=np.uint64)[0]))
        self.pipeline.set_random_state(gen, py)
        self._pid = os.getpid()

    def _reseed_in_worker(self) -> None:
        """In a new process (DataLoader worker), reseed from the worker's seed once."""
        self._pid = os.getpid()
        try:
            from torch.utils.data import get_worker_info
        except ImportError:  # pragma: no cover - torch is a dependency
            return
        info = get_worker_info()
        if info is not None:
            base = 0 if self.seed is None else self.seed
            mixed = np.random.SeedSequence([base, int(info.seed) % 2**63])
            self.reseed(int(mixed.generate_state(1, dtype=np.uint64)[0]))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if not (
            isinstance(image, np.ndarray)
            and image.dtype == np.uint8
            and image.ndim == 3
            and image.shape[2] == 3
            and min(image.shape[:2]) > 0
        ):
            got = getattr(image, "dtype", type(image).__name__), getattr(image, "shape", None)
            raise InputError(f"expected a uint8 (H, W, 3) image, got {got[0]} {got[1]}")
        if os.getpid() != self._pid:
            self._reseed_in_worker()
        out = self.pipeline(image=np.ascontiguousarray(image))["image"]
        if out.shape[:2] != (self.size, self.size):  # safety net; the pipelines end at size
            out = cv2.resize(out, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return out

    def describe(self) -> list[str]:
        """Names of the transforms in the pipeline, in order, with their probability;
        ``OneOf`` members are listed as ``OneOf[A|B]``."""

        def name(t: Any) -> str:
            if isinstance(t, A.OneOf):
                return "OneOf[" + "|".join(name(c) for c in t.transforms) + "]"
            return type(t).__name__

        return [f"{name(t)}(p={t.p:.2f})" for t in self.pipeline.transforms]

    def names(self) -> list[str]:
        """Class names of every transform in the pipeline, ``OneOf`` members included."""
        out: list[str] = []

        def walk(ts: Any) -> None:
            for t in ts:
                if isinstance(t, A.BaseCompose):
                    out.append(type(t).__name__)
                    walk(t.transforms)
                else:
                    out.append(type(t).__name__)

        walk(self.pipeline.transforms)
        return out

    def __repr__(self) -> str:
        return (
            f"ImageTransform({self.name}, size={self.size}, strength={self.strength:g}, "
            f"seed={self.seed}, steps=[{', '.join(self.describe())}])"
        )


def _check_size(size: int) -> int:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 8:
        raise InputError(f"size must be an integer >= 8, got {size!r}")
    return int(size)


def eval_transform(size: int, seed: int | None = None) -> ImageTransform:
    """Deterministic resize to ``size x size`` with INTER_AREA (aspect ratio not kept)."""
    size = _check_size(size)
    pipe = A.Compose([A.Resize(size, size, interpolation=cv2.INTER_AREA)])
    return ImageTransform(pipe, size, 0.0, "eval", seed)


def train_transform(size: int, strength: float = 1.0, seed: int | None = None) -> ImageTransform:
    """Training augmentation for face crops.

    In order: small rotation/scale/shift (``Affine``, ±10° at strength 1), random resized crop
    of the face crop (area 0.8–1.0, aspect 0.9–1.1) to ``size``, horizontal flip (p 0.5),
    colour jitter, the resolution equaliser (p ``0.5*strength``), downscale-upscale
    (scale 0.5–0.9), Gaussian or ISO noise, Gaussian or motion blur, JPEG (quality 50–99).

    ``strength`` in [0, 2] multiplies every probability (capped) and widens every magnitude
    (the ranges above are strength 1); 0 is ``eval_transform`` (resize only). The flip stays
    at p 0.5 for any strength > 0.
    """
    size = _check_size(size)
    s = float(strength)
    if not 0.0 <= s <= 2.0:
        raise InputError(f"strength must be in [0, 2], got {strength!r}")
    if s == 0.0:
        out = eval_transform(size, seed)
        out.name = "train"
        return out

    def p(base: float, cap: float = 0.9) -> float:
        return float(min(cap, base * s))

    def odd(v: float) -> int:
        return int(2 * round((v - 1) / 2) + 1)

    reflect = cv2.BORDER_REFLECT_101
    blur_hi = max(3, odd(3 + 4 * s))  # kernel 3..7 at strength 1
    steps = [
        A.Affine(
            rotate=(-10 * s, 10 * s),
            scale=(1 - 0.05 * s, 1 + 0.05 * s),
            translate_percent=(-0.03 * s, 0.03 * s),
            border_mode=reflect,
            interpolation=cv2.INTER_LINEAR,
            p=p(0.5),
        ),
        A.RandomResizedCrop(
            size=(size, size),
            scale=(max(0.5, 1 - 0.2 * s), 1.0),
            ratio=(1 - 0.1 * s, 1 / (1 - 0.1 * s)),
            interpolation=cv2.INTER_AREA,
            p=1.0,
        ),
        A.HorizontalFlip(p=0.5),
        A.ColorJitter(
            brightness=0.2 * s,
            contrast=0.2 * s,
            saturation=0.2 * s,
            hue=min(0.5, 0.04 * s),
            p=p(0.5),
        ),
        ResolutionEqualizer(min_side=MIN_SIDE, max_side=size, p=p(0.5, cap=1.0)),
        A.Downscale(
            scale_range=(max(0.25, 1 - 0.5 * s), 1 - 0.1 * s),
            interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
            p=p(0.2),
        ),
        A.OneOf(
            [
                A.GaussNoise(std_range=(0.005 * s, 0.03 * s), p=1.0),
                A.ISONoise(color_shift=(0.01 * s, 0.05 * s), intensity=(0.1 * s, 0.5 * s), p=1.0),
            ],
            p=p(0.25),
        ),
        A.OneOf(
            [
                A.GaussianBlur(blur_limit=(3, blur_hi), sigma_limit=(0.2, 1.2 * s), p=1.0),
                A.MotionBlur(blur_limit=(3, blur_hi), p=1.0),
            ],
            p=p(0.2),
        ),
        A.ImageCompression(
            compression_type="jpeg",
            quality_range=(max(20, round(100 - 50 * s)), max(21, round(100 - s))),
            p=p(0.5),
        ),
    ]
    return ImageTransform(A.Compose(steps), size, s, "train", seed)
