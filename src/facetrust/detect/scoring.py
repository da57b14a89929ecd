"""The one scoring core: aligned uint8 face crops in, per-expert logits, the fused logit and the
calibrated probability out.

Every path that scores faces calls :class:`FaceScorer`: the ``Detector`` (image faces and video
tracks), the ``Explainer``, ``facetrust eval``, the trainer's validation and calibration, and
``facetrust fuse``. Preprocessing is resolved from the checkpoint's metadata: crops are cut by
its crop contract (:func:`crop_contract`), the CNN reads them resized to its input size
(:class:`~facetrust.models.preprocess.Preprocess`) and each expert resizes them its own way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from facetrust.config import cpu_bf16_native
from facetrust.detect.calibration import apply_calibration
from facetrust.detect.experts import ExpertSet
from facetrust.errors import ModelError
from facetrust.faces.align import CropContract
from facetrust.media.budget import check_deadline
from facetrust.models.preprocess import Preprocess

__all__ = ["RUNTIMES", "FaceScorer", "FaceScores", "crop_contract", "load_scorer"]

#: where the networks run: torch, ONNX Runtime (an export, see facetrust.detect.onnx_export),
#: or auto (ONNX Runtime when the checkpoint's export is in the cache and the device is the CPU)
RUNTIMES = ("auto", "torch", "onnx")


def crop_contract(meta) -> CropContract:
    """The crop contract of a checkpoint (size, margin, alignment).

    Files written before the contract was recorded: see ``CheckpointMeta.crop_side``.
    """
    return CropContract(meta.crop_side(), float(meta.face_margin), meta.crop_alignment)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


@dataclass
class FaceScores:
    """Scores of N faces.

    ``inputs`` names the columns of ``logits`` (``["cnn"]`` for a CNN-only model, else the
    fusion's inputs); ``fused`` is the fused logit before calibration; ``probability`` the
    calibrated probability of a fake.
    """

    inputs: list[str]
    logits: np.ndarray  # (N, len(inputs))
    fused: np.ndarray  # (N,)
    probability: np.ndarray  # (N,)

    def __len__(self) -> int:
        return len(self.probability)

    def expert_probabilities(self) -> list[dict[str, float]] | None:
        """Each input's own probability per face (sigmoid of its logit), for fused models."""
        if self.inputs == ["cnn"]:
            return None
        p = _sigmoid(self.logits)
        return [{n: float(v) for n, v in zip(self.inputs, row, strict=True)} for row in p]

    @classmethod
    def empty(cls, inputs: list[str]) -> FaceScores:
        return cls(list(inputs), np.zeros((0, len(inputs))), np.zeros(0), np.zeros(0))


class FusionMixin:
    """Fusion and calibration shared by every runtime's scorer: a subclass gives ``inputs``,
    ``experts`` (an ``ExpertSet`` or None), ``meta`` and ``columns(crops)``."""

    def from_columns(self, cols: np.ndarray) -> FaceScores:
        """Fuse and calibrate ``columns`` output."""
        cols = np.asarray(cols, np.float64).reshape(-1, len(self.inputs))
        fused = cols[:, 0] if self.experts is None else self.experts.combine(cols)
        p = apply_calibration(fused, self.meta.calibration)
        return FaceScores(list(self.inputs), cols, fused, np.asarray(p, np.float64))

    def __call__(self, crops: list[np.ndarray]) -> FaceScores:
        if not len(crops):
            return FaceScores.empty(self.inputs)
        return self.from_columns(self.columns(crops))


class FaceScorer(FusionMixin):
    """A checkpoint's network, experts and calibration, applied to aligned face crops.

    Args:
        model: the CNN (``load_checkpoint``'s module, or one being trained).
        meta: its :class:`~facetrust.models.CheckpointMeta`.
        device: torch device of ``model``.
        batch_size: faces per forward pass.
        runtime: per-expert objects, e.g. ``{"clip": {"tower": module}}``.

    Call it on a list of ``S x S x 3`` uint8 crops cut by :attr:`contract` (any square size is
    accepted and resized); it returns :class:`FaceScores`.
    """

    def __init__(
        self,
        model: Any,
        meta: Any,
        *,
        device: str = "cpu",
        batch_size: int = 32,
        runtime: dict[str, dict] | None = None,
    ) -> None:
        self.model = model
        self.meta = meta
        self.device = device
        self.batch_size = int(batch_size)
        self.preprocess = Preprocess.from_meta(meta)
        self.contract = crop_contract(meta)
        self.experts = ExpertSet(meta.experts, runtime=runtime) if meta.experts else None
        self.inputs = self.experts.inputs if self.experts is not None else ["cnn"]

    @classmethod
    def from_checkpoint(cls, path, *, device: str = "cpu", **kwargs: Any) -> FaceScorer:
        from facetrust.models.checkpoint import load_checkpoint

        model, meta = load_checkpoint(path, device=device)
        return cls(model, meta, device=str(device), **kwargs)

    def __repr__(self) -> str:
        return (
            f"FaceScorer(arch={self.meta.arch!r}, inputs={self.inputs}, "
            f"crops={self.contract.describe()}, input={self.preprocess.size})"
        )

    def load(self) -> None:
        """Build the experts' networks now (at start-up, not in the first request)."""
        if self.experts is not None:
            self.experts.load()

    def _forward(self, crops: list[np.ndarray], read) -> list[np.ndarray]:
        """``read(model, x)`` on batches of preprocessed crops, in eval mode (the model's mode
        is restored after), checking a request's deadline between batches."""
        import torch

        was_training = bool(getattr(self.model, "training", False))
        self.model.eval()
        out = []
        try:
            with torch.inference_mode():
                for i in range(0, len(crops), self.batch_size):
                    check_deadline("scoring faces")  # a request's deadline, where one is set
                    x = self.preprocess(crops[i : i + self.batch_size]).to(self.device)
                    out.append(read(self.model, x).float().reshape(len(x), -1).cpu().numpy())
        finally:
            if was_training:
                self.model.train()
        return out

    def cnn_logits(self, crops: list[np.ndarray]) -> np.ndarray:
        """The CNN's logit per crop (the model is put in eval mode and restored after)."""
        if not len(crops):
            return np.zeros(0)
        out = self._forward(crops, lambda m, x: m(x))
        return np.concatenate(out)[:, 0].astype(np.float64)

    def cnn_embeddings(self, crops: list[np.ndarray]) -> np.ndarray:
        """The CNN's pre-logit features per crop ``(N, D)`` (timm-style models with
        ``forward_features`` and ``forward_head``), for diagnostics and probes."""
        if not hasattr(self.model, "forward_features") or not hasattr(self.model, "forward_head"):
            raise ModelError(f"{self.meta.arch} exposes no pre-logit features")
        if not len(crops):
            return np.zeros((0, 0), np.float32)
        out = self._forward(
            crops, lambda m, x: m.forward_head(m.forward_features(x), pre_logits=True)
        )
        return np.concatenate(out)

    def columns(self, crops: list[np.ndarray], cnn: np.ndarray | None = None) -> np.ndarray:
        """``(N, len(inputs))`` logits; ``cnn`` reuses CNN logits computed elsewhere."""
        z = self.cnn_logits(crops) if cnn is None else np.asarray(cnn, np.float64)
        if self.experts is None:
            return z.reshape(-1, 1)
        return self.experts.expert_logits(z, crops)


def load_scorer(
    path,
    *,
    runtime: str = "torch",
    device: str = "auto",
    batch_size: int = 32,
    threads: int | None = None,
    quick_start: bool = False,
) -> tuple[str, str, Any]:
    """The scoring core of checkpoint ``path`` on a runtime: ``(runtime, device, scorer)``.

    ``torch``: :class:`FaceScorer` on ``device``. ``onnx``: an
    :class:`~facetrust.detect.onnx_runtime.OnnxFaceScorer` (same interface) on the CPU with
    ``threads`` intra-op threads, from a ``.onnx`` export or the checkpoint's cached export
    (exported on first use). ``auto``: ``onnx`` when ``path`` is an export, or when its export
    is cached, the device is ``auto`` or ``cpu`` and ONNX Runtime is the faster choice (see
    :func:`_onnx_pays`), else ``torch``. Torch is not imported on the ONNX path.
    ``quick_start`` opens an ONNX session without prepacking its weights (for a
    run on a few images: it starts sooner and scores each face ~10 % slower).
    """
    from pathlib import Path

    from facetrust.errors import InputError

    path = Path(path)
    runtime = (runtime or "torch").strip().lower()
    if runtime not in RUNTIMES:
        raise InputError(f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)}")
    device = (device or "auto").strip().lower()
    is_onnx = path.suffix.lower() == ".onnx"
    if is_onnx and runtime == "torch":
        raise InputError(f"{path.name} is an ONNX export: it runs with --runtime onnx")
    if runtime == "auto":
        runtime = "onnx" if is_onnx or _onnx_pays(path, device, quick_start) else "torch"
    if runtime == "onnx":
        if device not in ("auto", "cpu"):
            raise InputError(f"the onnx runtime runs on the CPU; use --runtime torch for {device}")
        from facetrust.detect.onnx_runtime import OnnxFaceScorer

        scorer = OnnxFaceScorer.from_checkpoint(
            path, batch_size=batch_size, threads=threads, prepack=not quick_start
        )
        return "onnx", "cpu", scorer
    from facetrust.config import resolve_device
    from facetrust.models.checkpoint import load_checkpoint

    device = resolve_device(device)
    model, meta = load_checkpoint(path, device=device)
    return "torch", device, FaceScorer(model, meta, device=device, batch_size=batch_size)


def _onnx_pays(path, device: str, quick_start: bool) -> bool:
    """``auto``'s choice for a checkpoint: ONNX Runtime when its export is cached, on the CPU,
    unless many faces are to be scored (not ``quick_start``) by a model with a CLIP expert on a
    CPU with native bfloat16: torch runs that tower under bf16 autocast about twice as fast as
    ONNX Runtime's float32 (measured with benchmarks/load.py, docs/onnx.md), which outweighs
    torch's slower start (seconds) for a server or a scan, not for one image."""
    from facetrust.detect.onnx_export import onnx_cache_path

    if device not in ("auto", "cpu") or not onnx_cache_path(path).is_file():
        return False
    if quick_start:
        return True
    from facetrust.models.checkpoint import read_checkpoint_meta

    return "clip" not in read_checkpoint_meta(path).fusion_inputs or not cpu_bf16_native()
