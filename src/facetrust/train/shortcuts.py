"""Shortcut diagnostics: does a detector score the *source* of an image instead of the fake?

Three checks (``benchmarks/shortcuts.py`` runs them on a prepared data set and a model):

- :func:`source_predictability`: how well a feature set (an expert's features) predicts the
  source an image came from, by grouped cross-validation; balanced accuracy far above chance
  (``1 / n_sources``) means the features carry a dataset fingerprint a head can lean on. It
  is also measured on reals alone, where the label cannot explain it.
- :func:`real_vs_real`: the detector's AUC between the *reals* of two sources, for every pair.
  A detector that scores fakes, not sources, gives about 0.5; far from it (either way) means
  it separates the sources.
- :func:`held_out_folds`: per fold of leave-one-kind-out, AUC and ECE of a head fitted on the
  other kinds and scored on the held-out kind; confident and wrong shows as a large ECE.

Each returns plain numbers and a list of ``flags`` (one line per finding past its limit), so
a rigged data set is flagged by a test and a real one is summarised in the model card.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from facetrust.errors import InputError

__all__ = [
    "ShortcutLimits",
    "held_out_folds",
    "real_vs_real",
    "source_predictability",
]


@dataclass(frozen=True)
class ShortcutLimits:
    """Where a figure becomes a flag."""

    # balanced accuracy of the source classifier above chance by this much (absolute)
    source_margin: float = 0.25
    # real-vs-real AUC farther than this from 0.5 (0.60 or 0.40 at the default)
    real_vs_real: float = 0.10
    # held-out fold AUC below, and ECE above
    fold_auc: float = 0.70
    fold_ece: float = 0.10


@dataclass
class Finding:
    figures: dict[str, Any]
    flags: list[str] = field(default_factory=list)


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    classes = np.unique(y)
    return float(np.mean([np.mean(pred[y == c] == c) for c in classes]))


def source_predictability(
    features: np.ndarray,
    sources: Sequence[str],
    groups: Sequence[str],
    *,
    labels: Sequence[int] | None = None,
    folds: int = 4,
    limits: ShortcutLimits = ShortcutLimits(),
    name: str = "features",
    seed: int = 0,
) -> Finding:
    """Balanced accuracy of an L2 logistic regression predicting the source from
    ``features``, with folds that keep each group (a video or an image) on one side; on all
    rows and, given ``labels`` (1 = fake), on the reals alone."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, np.float64)
    src = np.asarray(sources)
    grp = np.asarray(groups)
    if x.ndim != 2 or len(x) != len(src) or len(src) != len(grp):
        raise InputError("features, sources and groups must have one row each")
    figures: dict[str, Any] = {}
    subsets = {"all": np.ones(len(src), bool)}
    if labels is not None:
        subsets["reals"] = np.asarray(labels) == 0
    flags = []
    for subset, keep in subsets.items():
        names = sorted(set(src[keep]))
        if len(names) < 2:
            continue
        xs, ys, gs = x[keep], src[keep], grp[keep]
        k = min(folds, min(int(np.sum(ys == s)) for s in names))
        if k < 2:
            continue
        pred = np.empty(len(ys), dtype=ys.dtype)
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        for tr, te in splitter.split(xs, ys, gs):
            scaler = StandardScaler().fit(xs[tr])
            clf = LogisticRegression(C=0.1, max_iter=2000)
            clf.fit(scaler.transform(xs[tr]), ys[tr])
            pred[te] = clf.predict(scaler.transform(xs[te]))
        acc = _balanced_accuracy(ys, pred)
        chance = 1.0 / len(names)
        figures[subset] = {
            "balanced_accuracy": round(acc, 4),
            "chance": round(chance, 4),
            "sources": len(names),
            "n": int(keep.sum()),
        }
        if acc > chance + limits.source_margin:
            flags.append(
                f"{name} predict the source of {subset} images (balanced accuracy {acc:.2f}, "
                f"chance {chance:.2f}): a dataset fingerprint a head can learn"
            )
    return Finding(figures, flags)


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def real_vs_real(
    probs: Sequence[float],
    sources: Sequence[str],
    labels: Sequence[int],
    *,
    min_count: int = 20,
    limits: ShortcutLimits = ShortcutLimits(),
) -> Finding:
    """AUC of the detector's probability between the reals of every pair of sources (the
    second source of a pair counted positive); pairs with fewer than ``min_count`` reals on a
    side are left out."""
    p = np.asarray(probs, np.float64)
    src = np.asarray(sources)
    real = np.asarray(labels) == 0
    names = sorted(s for s in set(src[real]) if np.sum(real & (src == s)) >= min_count)
    pairs = {}
    flags = []
    for a, b in combinations(names, 2):
        keep = real & np.isin(src, [a, b])
        auc = _auc((src[keep] == b).astype(int), p[keep])
        pairs[f"{a}|{b}"] = round(auc, 4)
        if abs(auc - 0.5) > limits.real_vs_real:
            flags.append(
                f"reals of {a} and {b} get different scores (AUC {auc:.2f}): the detector "
                "separates these sources"
            )
    worst = max(pairs.values(), key=lambda v: abs(v - 0.5)) if pairs else None
    return Finding({"pairs": pairs, "worst": worst, "sources": names}, flags)


def held_out_folds(
    features: np.ndarray,
    labels: Sequence[int],
    sources: Sequence[str],
    folds: Mapping[str, Sequence[str]],
    fit: Callable[[np.ndarray, np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]],
    *,
    limits: ShortcutLimits = ShortcutLimits(),
    name: str = "features",
) -> Finding:
    """Leave-one-kind-out: for each fold (name -> held-out sources), ``fit(x, y, groups)``
    on the other sources returns a function giving probabilities; AUC and ECE on the held-out
    rows (which need both classes)."""
    from facetrust.train.metrics import ece_score

    x = np.asarray(features, np.float64)
    y = np.asarray(labels, np.int64)
    src = np.asarray(sources)
    per_fold = {}
    flags = []
    for fold, held in folds.items():
        test = np.isin(src, list(held))
        if len(np.unique(y[test])) < 2 or len(np.unique(y[~test])) < 2:
            continue
        predict = fit(x[~test], y[~test], src[~test])
        p = np.clip(np.asarray(predict(x[test]), np.float64), 0.0, 1.0)
        auc, ece = _auc(y[test], p), float(ece_score(y[test], p))
        per_fold[fold] = {"auc": round(auc, 4), "ece": round(ece, 4), "n": int(test.sum())}
        if auc < limits.fold_auc:
            flags.append(f"{name}: held-out {fold} AUC {auc:.2f} (< {limits.fold_auc})")
        if ece > limits.fold_ece:
            flags.append(f"{name}: held-out {fold} ECE {ece:.2f} (> {limits.fold_ece})")
    aucs = [v["auc"] for v in per_fold.values()]
    summary = {
        "folds": per_fold,
        "mean_auc": round(float(np.mean(aucs)), 4) if aucs else None,
        "worst_auc": round(float(np.min(aucs)), 4) if aucs else None,
    }
    return Finding(summary, flags)
