"""``PseudoFakeMix``: which pseudo-fake kinds are made, and in what proportions.

Configured once with ``{kind: ratio}`` (a ratio of 0 switches a kind off) and optional
per-kind settings; each call draws a kind and makes a fake from a real crop. Kinds whose needs
are not met on a call (``splice`` without landmarks or without a donor) are left out of that
draw and the other ratios renormalised; ``InputError`` when no enabled kind can be made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from facetrust.data.pseudo.registry import (
    N_FACEMESH,
    PSEUDO_FAKES,
    PseudoFake,
    PseudoFakeMaker,
    as_generator,
    create_pseudo_fake,
)
from facetrust.errors import InputError

__all__ = ["DEFAULT_RATIOS", "PseudoFakeMix"]

DEFAULT_RATIOS: dict[str, float] = {"sbi": 0.5, "splice": 0.25, "trace": 0.25}


def _has_facemesh(landmarks: np.ndarray | None) -> bool:
    if landmarks is None:
        return False
    pts = np.asarray(landmarks)
    return pts.ndim == 2 and pts.shape[0] == N_FACEMESH and pts.shape[1] >= 2


class PseudoFakeMix:
    """Draw a pseudo-fake kind by ratio and make the fake.

    Args:
        ratios: ``{kind: ratio >= 0}`` over registered kinds (``PSEUDO_FAKES``); normalised
            to sum 1; kinds left out or at 0 are off. Default ``DEFAULT_RATIOS``.
        settings: ``{kind: config object or dict of keyword settings}`` for the makers.
        seed: seeds the generator used when a call gets no ``rng``.

    Call: ``mix(image, landmarks=None, rng=None, donor=None, donor_landmarks=None)`` ->
    :class:`PseudoFake` (label fake, with its mask and kind).
    """

    def __init__(
        self,
        ratios: Mapping[str, float] | None = None,
        settings: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> None:
        ratios = dict(DEFAULT_RATIOS if ratios is None else ratios)
        unknown = sorted(set(ratios) - set(PSEUDO_FAKES))
        if unknown:
            raise InputError(f"unknown pseudo-fake kinds {unknown}: use {', '.join(PSEUDO_FAKES)}")
        for kind, r in ratios.items():
            if not isinstance(r, int | float) or not math.isfinite(r) or r < 0:
                raise InputError(f"ratio of {kind!r} must be a finite number >= 0, got {r!r}")
        total = float(sum(ratios.values()))
        if total <= 0:
            raise InputError("at least one pseudo-fake kind needs a ratio > 0")
        settings = dict(settings or {})
        stray = sorted(set(settings) - set(ratios))
        if stray:
            raise InputError(f"settings given for kinds without a ratio: {stray}")
        self.ratios = {k: float(r) / total for k, r in ratios.items() if r > 0}
        self.makers: dict[str, PseudoFakeMaker] = {}
        for kind in self.ratios:
            cfg = settings.get(kind)
            if isinstance(cfg, Mapping):
                self.makers[kind] = create_pseudo_fake(kind, **cfg)
            else:
                self.makers[kind] = create_pseudo_fake(kind, cfg)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The enabled kinds."""
        return tuple(self.ratios)

    def __repr__(self) -> str:
        ratios = ", ".join(f"{k!r}: {r:.3g}" for k, r in self.ratios.items())
        makers = ", ".join(repr(m) for m in self.makers.values())
        return f"PseudoFakeMix(ratios={{{ratios}}}, seed={self.seed}, makers=[{makers}])"

    def probabilities(self, *, landmarks: bool = True, donor: bool = True) -> dict[str, float]:
        """The draw probabilities when landmarks / a donor (with landmarks) are or are not
        available; raises ``InputError`` when no enabled kind can be made."""
        ok = {
            k: r
            for k, r in self.ratios.items()
            if (landmarks or not self.makers[k].needs_landmarks)
            and (donor or not self.makers[k].needs_donor)
        }
        if not ok:
            raise InputError(
                f"no enabled pseudo-fake kind ({', '.join(self.kinds)}) can be made with "
                f"landmarks={landmarks}, donor={donor}: splice needs (468, 2) landmarks for "
                "the image and a donor crop with its landmarks"
            )
        total = sum(ok.values())
        return {k: r / total for k, r in ok.items()}

    def draw_kind(
        self,
        rng: np.random.Generator | int | None = None,
        *,
        landmarks: bool = True,
        donor: bool = True,
    ) -> str:
        """Draw one kind by ratio among those that can be made."""
        g = self._rng if rng is None else as_generator(rng)
        probs = self.probabilities(landmarks=landmarks, donor=donor)
        kinds = list(probs)
        return kinds[int(g.choice(len(kinds), p=np.array(list(probs.values()))))]

    def __call__(
        self,
        image: np.ndarray,
        landmarks: np.ndarray | None = None,
        rng: np.random.Generator | int | None = None,
        *,
        donor: np.ndarray | None = None,
        donor_landmarks: np.ndarray | None = None,
    ) -> PseudoFake:
        g = self._rng if rng is None else as_generator(rng)
        has_lm = _has_facemesh(landmarks)
        has_donor = donor is not None and _has_facemesh(donor_landmarks)
        kind = self.draw_kind(g, landmarks=has_lm, donor=has_donor)
        return self.makers[kind](image, landmarks, g, donor=donor, donor_landmarks=donor_landmarks)
