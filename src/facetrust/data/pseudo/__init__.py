"""Pseudo-fakes made from real face crops: one registry (``PSEUDO_FAKES``), a mix by ratio.

Kinds (each a registered :class:`PseudoFakeMaker`, configured by a frozen settings dataclass):

- ``sbi``: self-blended images (Shiohara & Yamasaki, CVPR 2022), blending boundaries;
- ``splice``: a landmark region from another real face, aligned, colour-matched and feathered
  (editing / photoshop-like fakes);
- ``trace``: generator up-sampling traces (NPR, Tan et al., CVPR 2024) on a real, so the fake
  is content-aligned with its real twin (B-Free, Guillaro et al., CVPR 2025);
- ``resynth``: the whole real re-made by a small autoencoder facetrust trained on reals
  (AlignedForensics / DDA, Rajan et al., ICLR 2025): a decoder's traces on every pixel, the
  real's content kept.

Every result is a :class:`PseudoFake`: image, mask (where it differs from its real), kind,
label ``fake``. See docs/pseudo-fakes.md.
"""

from __future__ import annotations

from facetrust.data.pseudo.mix import DEFAULT_RATIOS, PseudoFakeMix
from facetrust.data.pseudo.registry import (
    PSEUDO_FAKES,
    PseudoFake,
    PseudoFakeMaker,
    create_pseudo_fake,
    register_pseudo_fake,
)
from facetrust.data.pseudo.resynth import Resynth, ResynthConfig
from facetrust.data.pseudo.self_blend import SelfBlend
from facetrust.data.pseudo.splice import SPLICE_REGIONS, Splice, SpliceConfig, splice
from facetrust.data.pseudo.trace import TRACE_OPS, Trace, TraceConfig, upsample_trace

__all__ = [
    "DEFAULT_RATIOS",
    "PSEUDO_FAKES",
    "SPLICE_REGIONS",
    "TRACE_OPS",
    "PseudoFake",
    "PseudoFakeMaker",
    "PseudoFakeMix",
    "Resynth",
    "ResynthConfig",
    "SelfBlend",
    "Splice",
    "SpliceConfig",
    "Trace",
    "TraceConfig",
    "create_pseudo_fake",
    "register_pseudo_fake",
    "splice",
    "upsample_trace",
]
