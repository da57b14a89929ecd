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
    device: str | None = None,
    batch_size: int = 64,
    sources: list[str] | None = None,
):
    """Calibrated probabilities of a checkpoint for every face crop of a prepared manifest,
    through the scoring core detection uses (:class:`~facetrust.detect.scoring.FaceScorer`).

    The manifest's crop contract must be the checkpoint's (``InputError`` naming both), so the
    figures describe the pixels ``facetrust detect`` scores. Returns
    ``(rows, probs, meta, model_path)``.
    """
    from facetrust.config import Settings, resolve_device
    from facetrust.data.manifest import check_contract, manifest_contract, read_manifest
    from facetrust.detect.scoring import FaceScorer
    from facetrust.models.zoo import configured_model
    from facetrust.train.fusion import score_rows

    rows = read_manifest(manifest)
    if sources:
        rows = [r for r in rows if r.source in set(sources)]
    rows = [r for r in rows if r.crop]
    if not rows:
        raise InputError(f"{manifest}: no face crops to evaluate (run `facetrust prepare` first)")
    path = configured_model(model)  # None: FACETRUST_MODEL, else the default, as detection
    device = resolve_device(device or Settings().device)
    scorer = FaceScorer.from_checkpoint(path, device=device, batch_size=batch_size)
    check_contract(manifest_contract(rows), scorer.contract, f"{manifest}", f"{path}")
    scores = score_rows(scorer, rows, Path(manifest))
    return rows, scores.probability, scorer.meta, path


def evaluate_checkpoint(
    manifest: str | os.PathLike,
    model: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    device: str | None = None,
    threshold: float | None = None,
    batch_size: int = 64,
    sources: list[str] | None = None,
) -> dict[str, Any]:
    """Write ``report.json``, ``roc.png``, ``reliability.png`` and ``predictions.jsonl``."""
    from facetrust.train.report import write_report

    rows, probs, meta, path = score_manifest(
        manifest, model, device=device, batch_size=batch_size, sources=sources
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
