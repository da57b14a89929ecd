"""``sbi``: self-blended images (Shiohara & Yamasaki, CVPR 2022) as a registered kind.

A thin wrapper over :func:`facetrust.data.sbi.self_blend` (see that module for the method):
the face is blended with a colour-, frequency- and geometry-jittered copy of itself inside a
soft landmark-hull mask. Landmarks are optional (without them the mask is a centred ellipse).
The mask returned is the blend mask actually used.
"""

from __future__ import annotations

import numpy as np

from facetrust.data.pseudo.registry import PseudoFakeMaker, register_pseudo_fake
from facetrust.data.sbi import SBIConfig, self_blend

__all__ = ["SelfBlend"]


@register_pseudo_fake
class SelfBlend(PseudoFakeMaker):
    """Self-blended image; settings: :class:`facetrust.data.sbi.SBIConfig`."""

    name = "sbi"
    config_class = SBIConfig

    def make(
        self,
        image: np.ndarray,
        landmarks: np.ndarray | None,
        rng: np.random.Generator,
        donor: np.ndarray | None,
        donor_landmarks: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        return self_blend(image, landmarks, rng, self.cfg)
