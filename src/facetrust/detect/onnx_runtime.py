"""The ONNX Runtime backend of the scoring core: :class:`OnnxFaceScorer`.

Same interface as :class:`~facetrust.detect.scoring.FaceScorer` (aligned uint8 crops in,
:class:`~facetrust.detect.scoring.FaceScores` out; ``columns`` / ``from_columns``, ``inputs``,
``contract``, ``meta``), on a file written by :func:`~facetrust.detect.onnx_export.export_onnx`.
The graph computes the CNN's and the CLIP expert's logits; the frequency expert, the fusion
stack and the calibration run in numpy exactly as in the torch runtime. Nothing here imports
torch: with a cached export, ``facetrust detect`` starts without it.

Threads: ONNX Runtime's intra-op pool gets ``threads`` (default: facetrust's thread setting,
``FACETRUST_THREADS`` / ``--threads``, else the cores this process may use), its inter-op pool
one, and its workers do not spin while idle, so ORT, OpenCV and the face models, which run one
after another, never hold more threads than cores.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from facetrust.detect.experts import ExpertSet, clip_pixels
from facetrust.detect.onnx_export import EXPORT_VERSION
from facetrust.detect.scoring import FusionMixin, crop_contract
from facetrust.errors import ModelError
from facetrust.media.budget import check_deadline
from facetrust.models.preprocess import Preprocess, resize_square

__all__ = ["OnnxFaceScorer", "onnx_session"]


def onnx_session(path: str | os.PathLike, threads: int | None = None, prepack: bool = True) -> Any:
    """An ONNX Runtime CPU session on ``path`` with facetrust's thread policy. ``prepack=False``
    skips repacking the weights for the matrix kernels: the fused default's session opens
    with ~0.5 s less CPU and then runs ~10 % slower (the right trade for a one-off run)."""
    import onnxruntime as ort

    if threads is None:
        from facetrust.config import Settings, default_threads

        threads = Settings().threads or default_threads()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    if not prepack:
        opts.add_session_config_entry("session.disable_prepacking", "1")
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"cannot load ONNX model {path}: {first}") from None


class OnnxFaceScorer(FusionMixin):
    """A facetrust ONNX export's graph, experts and calibration, applied to aligned face crops.

    Args:
        path: a file written by ``facetrust export``.
        batch_size: faces per graph run, at most :attr:`run_batch` (1).
        threads: ONNX Runtime intra-op threads (see the module docstring).
        runtime: per-expert objects for the experts run in numpy, as ``FaceScorer``'s.
        prepack: see :func:`onnx_session` (False: quicker to open, slower per face).
    """

    model = None  # no torch module: Grad-CAM and embeddings need the torch runtime
    device = "cpu"
    # Faces per graph run. ONNX Runtime's CPU kernels gain nothing from batches: one face at a
    # time costs less CPU per face (facetrust-fast, 1 thread: 11.7 ms at 1, 13.9 ms at 32; the
    # activations stay in cache), with the same probabilities (benchmarks/scan_stages.py).
    run_batch = 1

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        batch_size: int = 32,
        threads: int | None = None,
        runtime: dict[str, dict] | None = None,
        prepack: bool = True,
    ) -> None:
        from facetrust.models.checkpoint import CheckpointMeta

        self.path = Path(path)
        self.batch_size = int(batch_size)
        self.session = onnx_session(self.path, threads, prepack)
        props = self.session.get_modelmeta().custom_metadata_map
        if "facetrust.meta" not in props or "facetrust.graph" not in props:
            raise ModelError(f"{self.path} is not a facetrust ONNX export (see facetrust export)")
        self.graph: dict[str, Any] = json.loads(props["facetrust.graph"])
        if int(self.graph.get("version", 0)) != EXPORT_VERSION:
            raise ModelError(
                f"{self.path} was exported with layout {self.graph.get('version')}; this "
                f"facetrust reads {EXPORT_VERSION}: export it again"
            )
        self.meta = CheckpointMeta.model_validate_json(props["facetrust.meta"])
        self.model_sha256: str | None = props.get("facetrust.model_sha256")
        self.preprocess = Preprocess.from_meta(self.meta)
        self.contract = crop_contract(self.meta)
        self.experts = ExpertSet(self.meta.experts, runtime=runtime) if self.meta.experts else None
        self.inputs = self.experts.inputs if self.experts is not None else ["cnn"]
        self._in_graph: list[str] = list(self.graph["experts"])
        self._sizes: dict[str, int] = {k: int(v) for k, v in self.graph["sizes"].items()}
        missing = [n for n in self.inputs if n not in self._in_graph and self._numpy(n) is None]
        if missing:
            raise ModelError(f"{self.path} computes no {missing[0]!r} logit")

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **kwargs: Any) -> OnnxFaceScorer:
        """From a ``.onnx`` export, or a ``.safetensors`` checkpoint through its cached export
        (exported on first use, see :func:`~facetrust.detect.onnx_export.cached_onnx`)."""
        path = Path(path)
        if path.suffix.lower() != ".onnx":
            from facetrust.detect.onnx_export import cached_onnx

            path = cached_onnx(path)
        return cls(path, **kwargs)

    def _numpy(self, name: str) -> Any:
        return None if self.experts is None else self.experts.experts.get(name)

    def __repr__(self) -> str:
        return (
            f"OnnxFaceScorer(arch={self.meta.arch!r}, inputs={self.inputs}, "
            f"crops={self.contract.describe()}, input={self.preprocess.size}, "
            f"int8={bool(self.graph.get('int8'))})"
        )

    def load(self) -> None:
        """Build the numpy experts now (the graph's networks are loaded with the session)."""
        for name in self.inputs:
            if name not in self._in_graph and self._numpy(name) is not None:
                self._numpy(name).load()

    def _run(self, crops: list[np.ndarray], want: list[str]) -> dict[str, np.ndarray]:
        """Graph logits ``want`` (of ``cnn``, ``clip``) per crop, in batches."""
        out: dict[str, list[np.ndarray]] = {n: [] for n in want}
        names = self.graph["inputs"]
        step = max(1, min(self.batch_size, self.run_batch))
        for i in range(0, len(crops), step):
            check_deadline("scoring faces")  # a request's deadline, where one is set
            batch = crops[i : i + step]
            feeds = {}
            for expert, input_name in names.items():
                size = self._sizes[expert]
                if expert not in want:  # one blank image: ONNX cannot reshape an empty batch
                    feeds[input_name] = np.zeros((1, size, size, 3), np.uint8)
                elif expert == "clip":
                    feeds[input_name] = clip_pixels(batch, size)
                else:
                    feeds[input_name] = np.stack([resize_square(c, size) for c in batch])
            res = self.session.run([self.graph["outputs"][n] for n in want], feeds)
            for n, r in zip(want, res, strict=True):
                out[n].append(np.asarray(r, np.float64).reshape(-1))
        return {n: np.concatenate(v) if v else np.zeros(0) for n, v in out.items()}

    def cnn_logits(self, crops: list[np.ndarray]) -> np.ndarray:
        """The CNN's logit per crop."""
        if not len(crops):
            return np.zeros(0)
        return self._run(list(crops), ["cnn"])["cnn"]

    def cnn_embeddings(self, crops: list[np.ndarray]) -> np.ndarray:
        raise ModelError("CNN embeddings need the torch runtime (--runtime torch)")

    def columns(self, crops: list[np.ndarray], cnn: np.ndarray | None = None) -> np.ndarray:
        """``(N, len(inputs))`` logits; ``cnn`` reuses CNN logits computed elsewhere."""
        crops = list(crops)
        want = [
            n for n in self._in_graph if n in self.inputs and not (n == "cnn" and cnn is not None)
        ]
        got = self._run(crops, want) if crops and want else {n: np.zeros(0) for n in want}
        if cnn is not None:
            got["cnn"] = np.asarray(cnn, np.float64).reshape(-1)
        for name in self.inputs:
            if name not in got:
                got[name] = self._numpy(name)(crops) if crops else np.zeros(0)
        return np.stack([got[n].reshape(-1) for n in self.inputs], axis=1)
