"""Frozen-feature experts beside the CNN, found by name in a registry, and their fusion.

Built in: ``clip`` (:mod:`.clip`) and ``frequency`` (:mod:`.frequency`). A new expert is one
module with an :class:`Expert` subclass decorated by :func:`register_expert`, imported here.
"""

from facetrust.detect.experts.base import (
    Expert,
    LinearHead,
    RoutedHead,
    expert_class,
    head_from_dict,
    list_experts,
    register_expert,
)
from facetrust.detect.experts.clip import CLIP_SIZE, ClipExpert, clip_cls_features, clip_pixels
from facetrust.detect.experts.frequency import FREQ_BINS, FrequencyExpert, frequency_features
from facetrust.detect.experts.fusion import ExpertSet

__all__ = [
    "CLIP_SIZE",
    "FREQ_BINS",
    "ClipExpert",
    "Expert",
    "ExpertSet",
    "FrequencyExpert",
    "LinearHead",
    "RoutedHead",
    "clip_cls_features",
    "clip_pixels",
    "expert_class",
    "frequency_features",
    "head_from_dict",
    "list_experts",
    "register_expert",
]
