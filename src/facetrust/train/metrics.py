"""Detection metrics per face, per frame and per video, overall and per group (source, kind).

Labels are 1 = fake, 0 = real (``"fake"`` / ``"real"`` strings are accepted too); probabilities
are calibrated fake probabilities in [0, 1], and "fake" is predicted when ``prob >= threshold``.
Every value is a plain ``int`` / ``float`` or ``None`` (never NaN), so results serialise as
strict JSON. Metrics that need both classes (AUC, AP, EER) are ``None`` for a one-class set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from facetrust.data.manifest import ManifestRow
from facetrust.errors import InputError

Level = Literal["face", "frame", "video"]
LEVELS: tuple[Level, ...] = ("face", "frame", "video")
Row = ManifestRow | Mapping[str, Any]

FRAME_RULE = "frame = max over its faces"
VIDEO_RULE = "video = mean over its frames (an image without video_id is its own video)"

#: bootstrap resamples behind ``auc_ci``, and the interval's coverage
AUC_CI_RESAMPLES = 1000
AUC_CI_LEVEL = 0.95


def as_labels_probs(labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """0/1 int labels and float64 probabilities of the same, non-zero length."""
    y = np.asarray(labels)
    if y.dtype.kind in "OUS":
        if not np.all((y == "fake") | (y == "real")):
            raise InputError("labels must be 0 / 1 or 'real' / 'fake'")
        y = y == "fake"
    try:
        y = y.astype(np.float64)
        p = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("labels and probabilities must be numbers") from None
    if y.ndim != 1 or p.ndim != 1:
        raise InputError(f"labels and probabilities must be 1-D, got {y.shape} and {p.shape}")
    if y.shape != p.shape:
        raise InputError(f"labels and probabilities differ in length ({y.size} vs {p.size})")
    if y.size == 0:
        raise InputError("no labels given")
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise InputError("probabilities must be finite and lie in [0, 1]")
    if not np.all((y == 0) | (y == 1)):
        raise InputError("labels must be 0 (real) or 1 (fake)")
    return y.astype(np.int64), p


def _ratio(a: float, b: float) -> float | None:
    return float(a / b) if b else None


def reliability_table(labels: Any, probs: Any, bins: int = 15) -> dict[str, np.ndarray]:
    """Per equal-width bin on [0, 1]: ``count``, ``mean_prob``, ``frac_fake`` (NaN when empty).

    A probability of exactly 1 falls in the last bin. Also returns the bin ``edges``.
    """
    y, p = as_labels_probs(labels, probs)
    if bins < 1:
        raise InputError(f"bins must be >= 1, got {bins}")
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    count = np.bincount(idx, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(idx, weights=p, minlength=bins) / count
        frac_fake = np.bincount(idx, weights=y, minlength=bins) / count
    return {
        "edges": np.linspace(0.0, 1.0, bins + 1),
        "count": count,
        "mean_prob": mean_prob,
        "frac_fake": frac_fake,
    }


def ece_score(labels: Any, probs: Any, bins: int = 15) -> float:
    """Expected calibration error: sum over equal-width bins of ``n_b / n * |frac - mean_p|``."""
    t = reliability_table(labels, probs, bins)
    full = t["count"] > 0
    gap = np.abs(t["frac_fake"][full] - t["mean_prob"][full])
    return float(np.sum(t["count"][full] * gap) / np.sum(t["count"]))


#: fewest rows for which an ECE is reported as meaningful
MIN_ECE_ROWS = 50
#: an ECE is not meaningful when this share of the rows lies in one bin or two adjacent bins
#: (the probabilities hardly vary: the ECE then only compares their mean with the base rate)
ECE_CROWDED_SHARE = 0.95


def ece_summary(labels: Any, probs: Any, bins: int = 15, unit: str = "faces") -> dict[str, Any]:
    """The ECE with what it rests on: ``ece``, ``ece_bins`` (rows per equal-width bin),
    ``ece_bins_used`` (non-empty bins) and ``ece_note``: ``None`` when meaningful, else why not
    (fewer than ``MIN_ECE_ROWS`` rows, or at least ``ECE_CROWDED_SHARE`` of them in one bin or
    two adjacent bins), e.g. ``"not meaningful: 8 faces, 2 bins used"``."""
    t = reliability_table(labels, probs, bins)
    count = t["count"]
    n = int(count.sum())
    full = count > 0
    gap = np.abs(t["frac_fake"][full] - t["mean_prob"][full])
    ece = float(np.sum(count[full] * gap) / n)
    used = int(full.sum())
    pairs = count[:-1] + count[1:] if bins > 1 else count
    crowded = max(float(count.max()), float(pairs.max())) >= ECE_CROWDED_SHARE * n
    note = None
    if n < MIN_ECE_ROWS or crowded:
        note = f"not meaningful: {n} {unit}, {used} bin{'s' if used != 1 else ''} used"
    return {
        "ece": ece,
        "ece_bins": [int(c) for c in count],
        "ece_bins_used": used,
        "ece_note": note,
    }


def ece_text(m: Mapping[str, Any], digits: int = 3) -> str:
    """``ECE 0.012`` or ``ECE 0.000 (not meaningful: 8 faces, 2 bins used)`` from metrics."""
    e = m.get("ece")
    text = "ECE -" if e is None else f"ECE {e:.{digits}f}"
    return f"{text} ({m['ece_note']})" if m.get("ece_note") else text


def auc_text(m: Mapping[str, Any], digits: int = 3) -> str:
    """``AUC 0.891 (95 % CI 0.866-0.918)``, ``AUC 0.891`` without an interval, or ``AUC -``."""
    a, ci = m.get("auc"), m.get("auc_ci")
    if a is None:
        return "AUC -"
    if not ci:
        return f"AUC {a:.{digits}f}"
    lo, hi = ci
    return f"AUC {a:.{digits}f} ({AUC_CI_LEVEL * 100:.0f} % CI {lo:.{digits}f}-{hi:.{digits}f})"


def eer(labels: Any, probs: Any) -> tuple[float, float]:
    """Equal error rate and its threshold.

    Over the observed probabilities as thresholds, the one where the false-positive and the
    false-negative rates are closest; the EER is their mean there. Needs both classes.
    """
    y, p = as_labels_probs(labels, probs)
    fake, real = np.sort(p[y == 1]), np.sort(p[y == 0])
    if fake.size == 0 or real.size == 0:
        raise InputError("the equal error rate needs both real and fake examples")
    cand = np.unique(p)
    fpr = (real.size - np.searchsorted(real, cand, side="left")) / real.size
    fnr = np.searchsorted(fake, cand, side="left") / fake.size
    i = int(np.argmin(np.abs(fpr - fnr)))
    return float((fpr[i] + fnr[i]) / 2), float(cand[i])


def _curve_counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tp, fp, threshold) at each distinct probability, from the highest down."""
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(ps)), ps.size - 1]  # last index of each distinct value
    tp = np.cumsum(ys)[last]
    return tp, last + 1 - tp, ps[last]


def roc_points(labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve ``(fpr, tpr, thresholds)``, starting at (0, 0); needs both classes."""
    y, p = as_labels_probs(labels, probs)
    if y.min() == y.max():
        raise InputError("a ROC curve needs both real and fake examples")
    tp, fp, thr = _curve_counts(y, p)
    return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]], np.r_[np.inf, thr]


def roc_auc(labels: Any, probs: Any) -> float:
    """Area under the ROC curve (ties count half), as ``sklearn.metrics.roc_auc_score``."""
    fpr, tpr, _ = roc_points(labels, probs)
    return float(np.trapezoid(tpr, fpr))


def auc_interval(
    labels: Any,
    probs: Any,
    clusters: Sequence[Any] | None = None,
    *,
    resamples: int = AUC_CI_RESAMPLES,
    level: float = AUC_CI_LEVEL,
    seed: int = 0,
) -> list[float] | None:
    """Percentile bootstrap interval ``[low, high]`` of the AUC, resampling whole clusters.

    ``clusters`` names the unit a row belongs to (a video: its frames and faces are not
    independent evidence); every cluster is drawn with replacement and all its rows come with
    it, so 100 frames of one video count as one draw, not 100. ``None``: every row is its own
    cluster. Seeded (the same inputs give the same interval). ``None`` when a class is missing,
    or when fewer than 2 clusters hold reals or fakes (no spread to resample).
    """
    y, p = as_labels_probs(labels, probs)
    if not 0 < level < 1:
        raise InputError(f"interval level must be in (0, 1), got {level}")
    if resamples < 1:
        raise InputError(f"resamples must be >= 1, got {resamples}")
    keys = np.arange(y.size) if clusters is None else np.asarray(list(clusters), dtype=object)
    if keys.size != y.size:
        raise InputError(f"clusters and labels differ in length ({keys.size} vs {y.size})")
    _, cl = np.unique(keys.astype(str), return_inverse=True)
    n_cl = int(cl.max()) + 1
    if np.unique(cl[y == 1]).size < 2 or np.unique(cl[y == 0]).size < 2:
        return None
    # rows in ascending probability; ties share one group (they count half, as in roc_auc)
    order = np.argsort(p, kind="mergesort")
    ps, ys, cs = p[order], y[order], cl[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ps)) + 1]
    rng = np.random.default_rng(seed)
    aucs: list[np.ndarray] = []
    chunk = max(1, min(resamples, 4_000_000 // max(ps.size, 1)))  # bounded memory
    for done in range(0, resamples, chunk):
        b = min(chunk, resamples - done)
        counts = rng.multinomial(n_cl, np.full(n_cl, 1.0 / n_cl), size=b).astype(np.float64)
        w = counts[:, cs]  # (b, rows): how often each row's cluster was drawn
        fake_w = np.add.reduceat(w * ys, starts, axis=1)
        real_w = np.add.reduceat(w * (1 - ys), starts, axis=1)
        below = np.cumsum(real_w, axis=1) - real_w  # real weight strictly below each group
        num = np.sum(fake_w * (below + 0.5 * real_w), axis=1)
        den = fake_w.sum(axis=1) * real_w.sum(axis=1)
        ok = den > 0  # a draw with one class has no AUC
        aucs.append(num[ok] / den[ok])
    a = np.concatenate(aucs)
    if a.size == 0:
        return None
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(a, [tail, 100 - tail])
    return [float(lo), float(hi)]


def average_precision(labels: Any, probs: Any) -> float:
    """Average precision, sum over thresholds of (R_n - R_n-1) P_n, as scikit-learn computes it."""
    y, p = as_labels_probs(labels, probs)
    if y.sum() == 0:
        raise InputError("average precision needs fake examples")
    tp, fp, _ = _curve_counts(y, p)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * tp / (tp + fp)))


def binary_metrics(
    labels: Any, probs: Any, threshold: float = 0.5, unit: str = "faces"
) -> dict[str, Any]:
    """Ranking, decision and calibration metrics of one set of predictions.

    Keys: ``n``, ``n_real``, ``n_fake``, ``threshold``, ``mean_prob``, ``auc``, ``ap``, ``eer``,
    ``eer_threshold``, ``accuracy``, ``precision``, ``recall`` (TPR), ``tnr`` (specificity),
    ``fpr``, ``f1``, ``confusion`` (tp, fp, tn, fn), ``ece`` (15 bins) with ``ece_bins`` (rows
    per bin), ``ece_bins_used`` and ``ece_note`` (see :func:`ece_summary`), ``brier``, ``nll``.
    A rate whose denominator is zero is ``None``.
    """
    y, p = as_labels_probs(labels, probs)
    n_fake = int(y.sum())
    n_real = int(y.size - n_fake)
    pred = p >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn, tn = n_fake - tp, n_real - fp
    both = n_fake > 0 and n_real > 0
    e, e_thr = eer(y, p) if both else (None, None)
    pc = np.clip(p, 1e-12, 1 - 1e-12)
    return {
        "n": int(y.size),
        "n_real": n_real,
        "n_fake": n_fake,
        "threshold": float(threshold),
        "mean_prob": float(p.mean()),
        "auc": roc_auc(y, p) if both else None,
        "ap": average_precision(y, p) if both else None,
        "eer": e,
        "eer_threshold": e_thr,
        "accuracy": float((tp + tn) / y.size),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, n_fake),
        "tnr": _ratio(tn, n_real),
        "fpr": _ratio(fp, n_real),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
        **ece_summary(y, p, unit=unit),
        "brier": float(np.mean((p - y) ** 2)),
        "nll": float(-np.mean(y * np.log(pc) + (1 - y) * np.log1p(-pc))),
    }


# --------------------------------------------------------------------------------------------
# Aggregation over rows of a manifest


def row_value(row: Row, name: str) -> Any:
    """A field of a manifest row given as a ``ManifestRow`` or a plain dict (``None`` if unset)."""
    if isinstance(row, Mapping):
        return row.get(name)
    return getattr(row, name, None)


def row_label(row: Row) -> int:
    """1 for a fake row, 0 for a real one (``"fake"`` / ``"real"`` or 1 / 0)."""
    v = row_value(row, "label")
    if v in ("fake", 1, True):
        return 1
    if v in ("real", 0, False):
        return 0
    raise InputError(f"row {row_value(row, 'path')!r} has no real/fake label (got {v!r})")


def _frame_key(row: Row) -> str:
    path, frame = row_value(row, "path"), row_value(row, "frame")
    return f"{path}" if frame is None else f"{path}@{frame}"


def _video_key(row: Row) -> str:
    # like ManifestRow.group("video"): ids are only unique within a source
    source = row_value(row, "source") or "unknown"
    return f"{source}/{row_value(row, 'video_id') or row_value(row, 'path')}"


def _reduce(
    keys: Sequence[str], y: np.ndarray, p: np.ndarray, how: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Group by key (first-seen order): label = max (any fake), prob = max or mean."""
    index: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        index.setdefault(k, []).append(i)
    reduce = np.max if how == "max" else np.mean
    out_y = np.array([y[ix].max() for ix in index.values()], dtype=np.int64)
    out_p = np.array([float(reduce(p[ix])) for ix in index.values()], dtype=np.float64)
    return out_y, out_p, list(index)


def aggregate(
    rows: Sequence[Row], probs: Any, level: Level
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Labels, probabilities and keys at ``level``.

    ``face``: one entry per row. ``frame``: the max over faces of the same (path, frame).
    ``video``: the mean over frames of the same ``video_id`` (within a source); a row without
    ``video_id`` is its own video (the image). A group is fake if any of its members is.
    """
    if level not in LEVELS:
        raise InputError(f"unknown level {level!r}: use one of {LEVELS}")
    if len(rows) != len(probs):
        raise InputError(f"rows and probabilities differ in length ({len(rows)} vs {len(probs)})")
    y, p = as_labels_probs([row_label(r) for r in rows], probs)
    if level == "face":
        keys = [f"{_frame_key(r)}#{row_value(r, 'face') or 0}" for r in rows]
        return y, p, keys
    fy, fp, fkeys = _reduce([_frame_key(r) for r in rows], y, p, "max")
    if level == "frame":
        return fy, fp, fkeys
    first_row = {}
    for r in rows:
        first_row.setdefault(_frame_key(r), r)
    return _reduce([_video_key(first_row[k]) for k in fkeys], fy, fp, "mean")


def _group_value(row: Row, attr: str) -> str:
    v = row_value(row, attr)
    if v is None:
        if attr == "kind":  # reals usually carry no manipulation kind
            return "real" if row_label(row) == 0 else "unknown"
        return "unknown"
    return str(v)


def _levels(rows: Sequence[Row], p: np.ndarray, threshold: float) -> dict[str, Any]:
    """``binary_metrics`` at every level, each with ``auc_ci``: the AUC's 95 % bootstrap
    interval with whole videos resampled (faces and frames of one video are one draw)."""
    video_of_frame = {}
    for r in rows:
        video_of_frame.setdefault(_frame_key(r), _video_key(r))
    out = {}
    for lv in LEVELS:
        y, q, keys = aggregate(rows, p, lv)
        m = binary_metrics(y, q, threshold, unit=f"{lv}s")
        if lv == "face":
            clusters = [_video_key(r) for r in rows]
        elif lv == "frame":
            clusters = [video_of_frame[k] for k in keys]
        else:
            clusters = keys
        m["auc_ci"] = None if m["auc"] is None else auc_interval(y, q, clusters)
        out[lv] = m
    return out


def evaluate(
    rows: Sequence[Row], probs: Any, threshold: float, by: Iterable[str] = ("source", "kind")
) -> dict[str, Any]:
    """Metrics at every level, overall and per group of each attribute in ``by``.

    Returns ``{"threshold", "rules", "face", "frame", "video", "per_<attr>": {value: {level:
    metrics}}}``. A one-class group still reports accuracy, recall or ``tnr`` and ``mean_prob``,
    with ``auc`` ``None``. Rows of kind ``None`` are grouped as ``real`` (reals) or ``unknown``.
    """
    if len(rows) != len(probs):
        raise InputError(f"rows and probabilities differ in length ({len(rows)} vs {len(probs)})")
    p = np.asarray(probs, dtype=np.float64)
    out: dict[str, Any] = {
        "threshold": float(threshold),
        "rules": {"frame": FRAME_RULE, "video": VIDEO_RULE},
        **_levels(rows, p, threshold),
    }
    for attr in by:
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            groups.setdefault(_group_value(r, attr), []).append(i)
        out[f"per_{attr}"] = {
            g: _levels([rows[i] for i in ix], p[ix], threshold) for g, ix in sorted(groups.items())
        }
    return out
