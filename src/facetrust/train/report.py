"""Evaluation reports: strict JSON metrics, ROC and reliability plots, per-row predictions.

Figures are drawn on ``matplotlib.figure.Figure`` objects (Agg, no pyplot and no global state).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facetrust.errors import InputError
from facetrust.files import atomic_write_text
from facetrust.train.metrics import (
    Row,
    aggregate,
    as_labels_probs,
    ece_summary,
    evaluate,
    reliability_table,
    roc_points,
    row_label,
    row_value,
)

PathLike = str | os.PathLike


def _figure(path: PathLike, *, figsize: tuple[float, float], nrows: int = 1, ratios=None):
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    kw = {"height_ratios": ratios} if ratios else None
    axes = fig.subplots(nrows, 1, gridspec_kw=kw, squeeze=False)[:, 0]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return fig, axes


def plot_roc(curves: Mapping[str, tuple[Any, Any]], path: PathLike) -> Path:
    """One ROC curve per entry (name -> (labels, probs)), AUC and counts in the legend; a PNG.

    One-class entries have no curve; they are listed in the legend as such.
    """
    fig, (ax,) = _figure(path, figsize=(6, 6))
    ax.plot([0, 1], [0, 1], ls="--", c="0.6", lw=1, label="chance")
    for name, (labels, probs) in curves.items():
        y, p = as_labels_probs(labels, probs)
        if y.min() == y.max():
            ax.plot([], [], " ", label=f"{name}: one class (n={y.size}), no curve")
            continue
        fpr, tpr, _ = roc_points(y, p)
        auc = float(np.trapezoid(tpr, fpr))
        ax.plot(fpr, tpr, lw=1.5, label=f"{name}: AUC {auc:.3f} (n={y.size})")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false-positive rate (reals flagged)")
    ax.set(ylabel="true-positive rate (fakes caught)", title="ROC")
    ax.legend(loc="lower right", fontsize="small")
    fig.savefig(path, format="png")
    return Path(path)


def plot_reliability(labels: Any, probs: Any, path: PathLike, bins: int = 15) -> Path:
    """Reliability diagram (fraction fake vs mean probability per bin, ECE in the title) above a
    bar chart of the bin counts; a PNG."""
    t = reliability_table(labels, probs, bins)
    es = ece_summary(labels, probs, bins)
    fig, (ax, axc) = _figure(path, figsize=(6, 7), nrows=2, ratios=[3, 1])
    edges, full = t["edges"], t["count"] > 0
    width = 1.0 / bins
    ax.plot([0, 1], [0, 1], ls="--", c="0.6", lw=1, label="perfect calibration")
    ax.bar(
        edges[:-1][full],
        t["frac_fake"][full],
        width=width,
        align="edge",
        alpha=0.7,
        edgecolor="k",
        lw=0.5,
        label="fraction fake",
    )
    ax.plot(t["mean_prob"][full], t["frac_fake"][full], "o", c="C3", ms=4, label="bin mean")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="fraction fake")
    title = f"Reliability: ECE {es['ece']:.3f} ({es['ece_bins_used']} of {bins} bins used, "
    title += f"n={int(t['count'].sum())})"
    if es["ece_note"]:
        title += "\nECE not meaningful here: too few rows or bins"
    ax.set_title(title, fontsize="medium")
    ax.legend(loc="upper left", fontsize="small")
    axc.bar(edges[:-1], t["count"], width=width, align="edge", color="0.5", edgecolor="k", lw=0.5)
    axc.set(xlim=(0, 1), xlabel="predicted fake probability", ylabel="count")
    fig.savefig(path, format="png")
    return Path(path)


def _jsonable(x: Any) -> Any:
    """Plain JSON types, with NaN / inf as ``None`` (strict JSON)."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple | np.ndarray):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return x


def write_report(
    out_dir: PathLike,
    rows: Sequence[Row],
    probs: Any,
    threshold: float,
    model_name: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate and write ``report.json``, ``roc.png``, ``reliability.png`` and
    ``predictions.jsonl`` (path, source, label, prob, plus frame/face/video_id/kind when set)
    into ``out_dir`` (created). Returns the report dict as written.

    The ROC plot shows overall face- and video-level curves and one face-level curve per
    source (when there are several); the reliability diagram is at face level.
    """
    if len(rows) != len(probs):
        raise InputError(f"rows and probabilities differ in length ({len(rows)} vs {len(probs)})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p = np.asarray(probs, dtype=np.float64)
    report = {
        "model": model_name,
        **evaluate(rows, p, threshold),
        "threshold": float(threshold),
        "extra": dict(extra or {}),
    }
    report = _jsonable(report)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, allow_nan=False) + "\n")

    y_face, p_face, _ = aggregate(rows, p, "face")
    curves: dict[str, tuple[Any, Any]] = {"all (face)": (y_face, p_face)}
    y_vid, p_vid, _ = aggregate(rows, p, "video")
    if y_vid.size < y_face.size:
        curves["all (video)"] = (y_vid, p_vid)
    sources = sorted({str(row_value(r, "source") or "unknown") for r in rows})
    if len(sources) > 1:
        for s in sources:
            ix = [i for i, r in enumerate(rows) if str(row_value(r, "source") or "unknown") == s]
            curves[s] = (y_face[ix], p_face[ix])
    plot_roc(curves, out / "roc.png")
    plot_reliability(y_face, p_face, out / "reliability.png")

    lines = []
    for r, prob in zip(rows, p.tolist(), strict=True):
        d = {
            "path": row_value(r, "path"),
            "source": row_value(r, "source") or "unknown",
            "label": "fake" if row_label(r) else "real",
            "prob": prob,
        }
        for k in ("video_id", "frame", "face", "kind"):
            if row_value(r, k) is not None:
                d[k] = row_value(r, k)
        lines.append(json.dumps(_jsonable(d), allow_nan=False))
    atomic_write_text(out / "predictions.jsonl", "\n".join(lines) + "\n")
    return report
