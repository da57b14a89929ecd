"""One registry of pseudo-fake kinds: a name and settings in, a maker out.

A *maker* is configured once (its settings dataclass, validated there and shown in
``__repr__``) and called on a real face crop::

    maker(image, landmarks, rng, donor=..., donor_landmarks=...) -> PseudoFake

Every pseudo-fake is labelled fake and carries a ``mask``: where (and how strongly) it differs
from the real it was made from. A kind may also give a *control* (``maker.control(image, fake)``):
the real with what the making does to a picture besides forging it, labelled real.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from facetrust.data.sbi import _as_points, _check_image
from facetrust.errors import InputError

__all__ = [
    "PSEUDO_FAKES",
    "PseudoFake",
    "PseudoFakeMaker",
    "create_pseudo_fake",
    "register_pseudo_fake",
]

N_FACEMESH = 468


@dataclass(frozen=True)
class PseudoFake:
    """A fake made from a real face crop.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB, the fake.
        mask: ``(H, W)`` float32 in [0, 1], where the fake differs from its real: the blend
            mask (``sbi``, ``splice``) or the trace map ``|fake - real|`` / 255 averaged over
            channels (``trace``).
        kind: the registered name of the maker.
        label: always ``"fake"``.
    """

    image: np.ndarray
    mask: np.ndarray
    kind: str
    label: Literal["fake"] = "fake"

    @property
    def y(self) -> int:
        return 1


class PseudoFakeMaker(ABC):
    """Base of a registered pseudo-fake kind (see the module docstring).

    Subclasses set ``name``, ``config_class`` (a frozen dataclass validated in
    ``__post_init__``), ``needs_landmarks`` / ``needs_donor``, and implement ``make``.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    needs_landmarks: ClassVar[bool] = False
    needs_donor: ClassVar[bool] = False

    def __init__(self, cfg: Any = None, **overrides: Any) -> None:
        if cfg is not None and overrides:
            raise InputError(f"{self.name}: give a config object or keyword settings, not both")
        if cfg is None:
            known = {f.name for f in fields(self.config_class)}
            bad = sorted(set(overrides) - known)
            if bad:
                raise InputError(f"{self.name}: unknown settings {bad}; use {sorted(known)}")
            cfg = self.config_class(**overrides)
        elif not isinstance(cfg, self.config_class):
            raise InputError(
                f"{self.name}: cfg must be a {self.config_class.__name__}, "
                f"got a {type(cfg).__name__}"
            )
        self.cfg = cfg

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cfg!r})"

    def __call__(
        self,
        image: np.ndarray,
        landmarks: np.ndarray | None = None,
        rng: np.random.Generator | int | None = None,
        *,
        donor: np.ndarray | None = None,
        donor_landmarks: np.ndarray | None = None,
    ) -> PseudoFake:
        """Make a pseudo-fake of ``image`` (uint8 ``(H, W, 3)`` RGB real face crop).

        Args:
            landmarks: ``(468, 2)`` FaceMesh points in crop pixels (required by kinds with
                ``needs_landmarks``; optional otherwise).
            rng: a numpy Generator or an int seed (``None``: fresh entropy).
            donor, donor_landmarks: another real face crop and its landmarks (kinds with
                ``needs_donor``).
        """
        _check_image(image)
        g = as_generator(rng)
        if self.needs_landmarks:
            landmarks = facemesh_points(landmarks, f"{self.name} needs the image's landmarks")
        if self.needs_donor:
            if donor is None:
                raise InputError(f"{self.name} needs a donor: another real face crop")
            _check_image(donor)
            donor_landmarks = facemesh_points(
                donor_landmarks, f"{self.name} needs the donor's landmarks"
            )
        fake, mask = self.make(image, landmarks, g, donor, donor_landmarks)
        return PseudoFake(image=fake, mask=mask, kind=self.name)

    @abstractmethod
    def make(
        self,
        image: np.ndarray,
        landmarks: np.ndarray | None,
        rng: np.random.Generator,
        donor: np.ndarray | None,
        donor_landmarks: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(fake uint8 (H, W, 3), mask float32 (H, W) in [0, 1])`` from checked inputs."""

    def control(self, image: np.ndarray, fake: np.ndarray) -> np.ndarray:
        """A real-labelled counterpart of ``fake``, the pseudo-fake made from ``image``: the
        real given what the making does to a picture besides forging it (a softer decoder's
        blur, say), so a head fitted on both learns the forgery, not that side effect. Kinds
        without one (their fakes keep the real's look outside the forgery) refuse."""
        raise InputError(f"{self.name} pseudo-fakes have no real-labelled control")


PSEUDO_FAKES: dict[str, type[PseudoFakeMaker]] = {}


def register_pseudo_fake(cls: type[PseudoFakeMaker]) -> type[PseudoFakeMaker]:
    """Class decorator: add a maker to ``PSEUDO_FAKES`` under its ``name``."""
    if not is_dataclass(cls.config_class):
        raise TypeError(f"{cls.__name__}.config_class must be a dataclass")
    if cls.name in PSEUDO_FAKES and PSEUDO_FAKES[cls.name] is not cls:
        raise ValueError(f"pseudo-fake kind {cls.name!r} is already registered")
    PSEUDO_FAKES[cls.name] = cls
    return cls


def create_pseudo_fake(kind: str, cfg: Any = None, **overrides: Any) -> PseudoFakeMaker:
    """Build the maker registered as ``kind`` from a config object or keyword settings."""
    if kind not in PSEUDO_FAKES:
        raise InputError(f"unknown pseudo-fake kind {kind!r}: use {', '.join(PSEUDO_FAKES)}")
    return PSEUDO_FAKES[kind](cfg, **overrides)


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, int | np.integer) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise InputError(f"rng must be a numpy Generator, an int seed or None, got {rng!r}")


def facemesh_points(landmarks: np.ndarray | None, missing: str) -> np.ndarray:
    """The ``(468, 2)`` float64 FaceMesh points, or an ``InputError`` saying what is wrong."""
    if landmarks is None:
        raise InputError(f"{missing} ((468, 2) FaceMesh points), got None")
    pts = _as_points(landmarks)
    if pts is None or len(pts) != N_FACEMESH or not np.all(np.isfinite(pts)):
        shape = None if pts is None else pts.shape
        raise InputError(f"{missing}: expected (468, 2) finite FaceMesh points, got {shape}")
    return pts
