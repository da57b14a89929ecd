"""The read-outs of an expert's features: a standardised linear head, and a routed pair of them.

A head is called on an ``(N, D)`` feature matrix and returns one logit per row; ``to_dict`` /
:func:`head_from_dict` carry it in a checkpoint as plain numbers. A :class:`LinearHead` is
written as it always was (no ``kind`` key); a :class:`RoutedHead` says ``"kind": "routed"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from facetrust.detect.calibration import sigmoid
from facetrust.errors import ModelError

__all__ = ["LinearHead", "RoutedHead", "head_from_dict"]


@dataclass
class LinearHead:
    """``logit = ((x - mean) / scale) @ weight + bias``: a standardised linear read-out."""

    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: float

    @property
    def width(self) -> int:
        """The number of features it reads."""
        return int(self.weight.size)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != self.weight.size:
            raise ValueError(f"head expects (N, {self.weight.size}) features, got {x.shape}")
        # einsum, not ``@``: numpy hands a matrix-vector product this wide (N x 18,432 for the
        # default's CLIP head) to OpenBLAS's thread pool, whose threads then spin for a while
        # after the call, on the cores the next face's torch CNN and CLIP tower run on: on a
        # 2-core CPU that made facetrust-default 170 ms per face instead of 72
        # (benchmarks/model_speed.py). einsum's own loop is one thread and as fast here.
        return np.einsum("nd,d->n", (x - self.mean) / self.scale, self.weight) + self.bias

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
            "weight": [float(v) for v in self.weight],
            "bias": float(self.bias),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LinearHead:
        try:
            head = cls(
                mean=np.asarray(d["mean"], np.float64),
                scale=np.asarray(d["scale"], np.float64),
                weight=np.asarray(d["weight"], np.float64),
                bias=float(d["bias"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"malformed expert head in the checkpoint: {e}") from None
        n = head.weight.size
        if (
            head.weight.ndim != 1
            or head.mean.shape != (n,)
            or head.scale.shape != (n,)
            or not np.all(head.scale > 0)
        ):
            raise ModelError("malformed expert head in the checkpoint: inconsistent sizes")
        return head


@dataclass
class RoutedHead:
    """Two heads on the same features mixed per face by a third, the router:
    ``p = sigmoid(router(x))``, ``logit = (1 - p) * clean(x) + p * both(x)``.

    ``clean`` was fitted on sharp faces alone (what transfers best to unseen kinds of fake),
    ``both`` on each face and its shrunk, re-compressed copy (what holds on a degraded face),
    and ``router`` tells a degraded face from a sharp one; so a face is read by the head made
    for how it looks. (benchmarks/clip_probe_loso.py --routed: 0.641 on unseen kinds against
    0.615 for the both-view head alone, 0.912 on degraded faces against 0.837 for the clean
    one.)
    """

    clean: LinearHead
    both: LinearHead
    router: LinearHead

    def __post_init__(self) -> None:
        widths = {h.width for h in (self.clean, self.both, self.router)}
        if len(widths) != 1:
            raise ValueError(f"the routed head's parts read different widths: {sorted(widths)}")

    @property
    def width(self) -> int:
        return self.clean.width

    def route(self, x: np.ndarray) -> np.ndarray:
        """The router's weight on the ``both`` head per row, in [0, 1]."""
        return sigmoid(self.router(x))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        p = self.route(x)
        return (1.0 - p) * self.clean(x) + p * self.both(x)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "routed",
            "clean": self.clean.to_dict(),
            "both": self.both.to_dict(),
            "router": self.router.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoutedHead:
        try:
            parts = {k: LinearHead.from_dict(d[k]) for k in ("clean", "both", "router")}
        except (KeyError, TypeError) as e:
            raise ModelError(f"malformed routed expert head in the checkpoint: {e}") from None
        try:
            return cls(**parts)
        except ValueError as e:
            raise ModelError(f"malformed routed expert head in the checkpoint: {e}") from None


_KINDS: dict[str, Any] = {"linear": LinearHead, "routed": RoutedHead}


def head_from_dict(d: Any) -> LinearHead | RoutedHead:
    """A head from its ``to_dict`` output; ``ModelError`` for an unknown kind or bad numbers."""
    if not isinstance(d, dict):
        raise ModelError("malformed expert head in the checkpoint: not a mapping")
    kind = d.get("kind", "linear")
    if kind not in _KINDS:
        raise ModelError(
            f"unknown expert head kind {kind!r} in the checkpoint (known: {', '.join(_KINDS)}); "
            "a newer facetrust may have written it"
        )
    return _KINDS[kind].from_dict(d)
