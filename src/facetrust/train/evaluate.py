"""Evaluate a checkpoint on a prepared manifest: metrics per face/frame/video, source and kind."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from facetrust.errors import InputError


def score_manifest(
    manifest: str | os.PathLike,
    model: str | os.PathLike | None,
    *,
    device: str = "auto",
    batch_size: int = 64,
    workers: int = 0,
    sources: list[str] | None = None,
):
    """Calibrated probabilities of a checkpoint for every face crop of a prepared manifest.

    Returns ``(rows, probs, meta, model_path)``.
    """
    from facetrust.config import resolve_device
    from facetrust.data.manifest import read_manifest
    from facetrust.data.transforms import eval_transform
    from facetrust.detect.calibration import apply_calibration
    from facetrust.models import load_checkpoint
    from facetrust.models.zoo import resolve_model
    from facetrust.train.datasets import FaceCropDataset
    from facetrust.train.loop import predict_logits

    rows = read_manifest(manifest)
    if sources:
        rows = [r for r in rows if r.source in set(sources)]
    rows = [r for r in rows if r.crop]
    if not rows:
        raise InputError(f"{manifest}: no face crops to evaluate (run `facetrust prepare` first)")
    path = resolve_model(model)
    dev = resolve_device(device)
    net, meta = load_checkpoint(path, device=dev)
    ds = FaceCropDataset(rows, manifest, eval_transform(meta.input_size), meta.mean, meta.std)
    logits = predict_logits(net, ds, batch_size, dev, workers)
    if meta.experts:  # a fused model: its experts read the cached crops as detection would
        logits = _fused_logits(rows, manifest, logits, meta.experts, batch_size)
    return rows, apply_calibration(logits, meta.calibration), meta, path


def _fused_logits(
    rows, manifest, cnn_logits: np.ndarray, spec: dict, batch_size: int
) -> np.ndarray:
    from facetrust.data.manifest import read_crop
    from facetrust.detect.experts import ExpertSet

    experts = ExpertSet(spec)
    out = []
    for i in range(0, len(rows), batch_size):
        crops = [read_crop(manifest, r.crop) for r in rows[i : i + batch_size]]
        out.append(experts.fuse(cnn_logits[i : i + batch_size], crops))
    return np.concatenate(out)


def evaluate_checkpoint(
    manifest: str | os.PathLike,
    model: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    device: str = "auto",
    threshold: float | None = None,
    batch_size: int = 64,
    workers: int = 0,
    sources: list[str] | None = None,
) -> dict[str, Any]:
    """Write ``report.json``, ``roc.png``, ``reliability.png`` and ``predictions.jsonl``."""
    from facetrust.train.report import write_report

    rows, probs, meta, path = score_manifest(
        manifest, model, device=device, batch_size=batch_size, workers=workers, sources=sources
    )
    thr = float(meta.threshold if threshold is None else threshold)
    return write_report(
        Path(out),
        rows,
        np.asarray(probs),
        thr,
        meta.name or path.stem,
        extra={
            "manifest": str(manifest),
            "checkpoint": str(path),
            "threshold_rule": meta.threshold_rule if threshold is None else "given",
        },
    )
