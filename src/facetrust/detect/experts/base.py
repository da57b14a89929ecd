"""What an expert is: features of aligned face crops, a head, and a registry by name.

An expert is a small class registered with :func:`register_expert`. It turns uint8 RGB face
crops into a feature matrix (``features``), and its head (:mod:`.heads`: linear, or routed)
turns those into one logit per face. Its ``options`` (JSON numbers and lists) fix what the
features are, so ``cache_key`` names a feature cache and ``to_spec`` / ``from_spec`` carry it in
a checkpoint.
Detection, feature extraction, fusion and evaluation find experts only through the registry:
adding one means adding one module that subclasses :class:`Expert`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from facetrust.detect.experts.heads import LinearHead, RoutedHead, head_from_dict
from facetrust.errors import ModelError

__all__ = [
    "Expert",
    "LinearHead",
    "RoutedHead",
    "expert_class",
    "head_from_dict",
    "list_experts",
    "register_expert",
]

_REGISTRY: dict[str, type[Expert]] = {}


class Expert(ABC):
    """Base class of the frozen-feature experts.

    Subclasses set ``name`` and implement ``features``; they may take keyword ``options``
    (stored in checkpoints and feature caches) and override ``load`` (build heavy parts now)
    and ``select`` (derive their features from a cache made with other options).
    """

    name: ClassVar[str]

    def __init__(self, head: LinearHead | RoutedHead | None = None, **options: Any) -> None:
        self.head = head
        self.options: dict[str, Any] = options

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"

    @abstractmethod
    def features(self, crops: list[np.ndarray]) -> np.ndarray:
        """Aligned uint8 RGB crops (any square size) -> ``(N, D)`` float32 features."""

    def load(self) -> None:  # noqa: B027 - optional hook, most experts have nothing to load
        """Build heavy parts (a network) now rather than on first use."""
        return None

    def cache_key(self) -> str:
        """Names the features: same key, same features for the same crop."""
        return f"{self.name}:{json.dumps(self.options, sort_keys=True)}"

    def select(self, options: dict[str, Any], feats: np.ndarray) -> np.ndarray | None:
        """This expert's features from features computed with other ``options``, or None."""
        return feats if options == self.options else None

    def __call__(self, crops: list[np.ndarray]) -> np.ndarray:
        """One logit per crop."""
        if self.head is None:
            raise ModelError(f"the {self.name} expert has no fitted head")
        if not crops:
            return np.zeros(0)
        return self.head(self.features(crops))

    def to_spec(self) -> dict[str, Any]:
        """The checkpoint's description: options and, when fitted, the head."""
        spec: dict[str, Any] = dict(self.options)
        if self.head is not None:
            spec["head"] = self.head.to_dict()
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any], **runtime: Any) -> Expert:
        """Rebuild from ``to_spec``'s output; ``runtime`` passes objects such as a network."""
        if not isinstance(spec, dict) or "head" not in spec:
            raise ModelError(f"malformed {cls.name} expert in the checkpoint: no head")
        options = {k: v for k, v in spec.items() if k != "head"}
        try:
            return cls(head_from_dict(spec["head"]), **options, **runtime)
        except TypeError as e:
            raise ModelError(f"malformed {cls.name} expert in the checkpoint: {e}") from None


def register_expert(cls: type[Expert]) -> type[Expert]:
    """Class decorator: make an expert known by its ``name``."""
    if not getattr(cls, "name", None) or cls.name == "cnn":
        raise ValueError("an expert needs a name other than 'cnn'")
    _REGISTRY[cls.name] = cls
    return cls


def list_experts() -> list[str]:
    """Names of the registered experts."""
    return sorted(_REGISTRY)


def expert_class(name: str) -> type[Expert]:
    """The registered expert class ``name``; ``ModelError`` listing the valid names if none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(
            f"unknown expert {name!r}; registered experts: {', '.join(list_experts())}"
        ) from None
