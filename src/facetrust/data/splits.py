"""Splits that keep groups together: by source, video, identity or feature cluster.

No group (a video's frames, a person, a source, a cluster of near-duplicates) is ever on two
sides of a split, and groups are assigned greedily so that each split gets its fraction of
each class where the groups allow it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from facetrust.data.manifest import ManifestRow
from facetrust.errors import InputError

__all__ = ["assign_splits", "cluster_split", "group_split", "leave_one_source_out"]

GroupBy = Literal["source", "video", "identity"]
_CLASSES = ("real", "fake")


def _check_fractions(fractions: Sequence[float], names: Sequence[str]) -> tuple[float, ...]:
    fr = tuple(float(f) for f in fractions)
    if len(fr) != len(names):
        raise InputError(f"{len(fr)} fractions for {len(names)} split names {list(names)}")
    if len(set(names)) != len(names):
        raise InputError(f"split names must differ, got {list(names)}")
    if any(not math.isfinite(f) or f < 0 for f in fr):
        raise InputError(f"fractions must be >= 0, got {list(fr)}")
    if abs(sum(fr) - 1.0) > 1e-6:
        raise InputError(f"fractions must sum to 1, got {list(fr)} (sum {sum(fr):.4g})")
    return fr


def _split_groups(
    rows: list[ManifestRow],
    keys: list[str],
    fractions: Sequence[float],
    names: Sequence[str],
    seed: int,
    what: str,
) -> dict[str, list[ManifestRow]]:
    """Assign whole groups (rows sharing a key) to splits, stratified by label greedily.

    Groups go largest first (ties in a seeded random order); each goes to the split whose
    per-class targets it fills best. A split with a positive fraction that would stay empty
    takes the smallest group of the split with the most groups.
    """
    fr = _check_fractions(fractions, names)
    if not rows:
        raise InputError("no rows to split")
    members: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        members.setdefault(k, []).append(i)
    wanted = [s for s, f in enumerate(fr) if f > 0]
    if len(members) < len(wanted):
        raise InputError(
            f"only {len(members)} {what} group(s) for {len(wanted)} splits "
            f"{[names[s] for s in wanted]}: a split would be empty"
        )
    group_keys = sorted(members)
    rng = np.random.default_rng(seed)
    order = [group_keys[i] for i in rng.permutation(len(group_keys))]
    order.sort(key=lambda k: -len(members[k]))  # stable: ties keep the random order

    totals = np.array([sum(1 for r in rows if r.label == c) for c in _CLASSES], dtype=np.float64)
    target = np.array(fr)[:, None] * totals[None, :]  # (splits, classes)
    current = np.zeros_like(target)
    weight = 1.0 / np.maximum(totals, 1.0)  # each class counts equally
    assigned: dict[str, int] = {}
    for k in order:
        g = np.array([sum(1 for i in members[k] if rows[i].label == c) for c in _CLASSES])
        best, best_score = wanted[0], -math.inf
        for s in wanted:
            # how much of what the split still needs this group supplies, minus overshoot
            need = target[s] - current[s]
            score = float((np.minimum(g, np.maximum(need, 0)) * weight).sum())
            score -= float((np.maximum(g - np.maximum(need, 0), 0) * weight).sum())
            # prefer splits further from their total target when scores tie
            score += 1e-9 * float((need * weight).sum())
            if score > best_score:
                best, best_score = s, score
        assigned[k] = best
        current[best] += g

    # no wanted split left empty
    for s in wanted:
        if any(v == s for v in assigned.values()):
            continue
        counts = {t: sum(1 for v in assigned.values() if v == t) for t in wanted}
        donor = max(wanted, key=lambda t: (counts[t], -t))
        smallest = min(
            (k for k in order if assigned[k] == donor), key=lambda k: (len(members[k]), k)
        )
        assigned[smallest] = s

    out: dict[str, list[ManifestRow]] = {n: [] for n in names}
    for i, k in enumerate(keys):
        out[names[assigned[k]]].append(rows[i])
    return out


def group_split(
    rows: Iterable[ManifestRow],
    by: GroupBy = "video",
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    names: Sequence[str] = ("train", "val", "test"),
    seed: int = 0,
) -> dict[str, list[ManifestRow]]:
    """Split rows so that no ``by`` group (``source``, ``video`` or ``identity``, see
    :meth:`ManifestRow.group`) is on two sides; stratified by label where groups allow.

    Returns ``{name: rows}`` in the input order. Raises InputError for fractions that do not
    sum to 1, or fewer groups than splits with a positive fraction.
    """
    rows = list(rows)
    if by not in ("source", "video", "identity"):
        raise InputError(f"unknown grouping {by!r}: use source, video or identity")
    return _split_groups(rows, [r.group(by) for r in rows], fractions, names, seed, by)


def _held_out_mask(rows: list[ManifestRow], held_out: str | Sequence[str]) -> np.ndarray:
    names = [held_out] if isinstance(held_out, str) else list(held_out)
    if not names:
        raise InputError("no held-out source given")
    sources = sorted({r.source for r in rows})
    kinds = sorted({r.kind for r in rows if r.kind})
    mask = np.zeros(len(rows), dtype=bool)
    for name in names:
        field, _, value = name.partition(":") if ":" in name else ("", "", name)
        if field not in ("", "source", "kind"):
            raise InputError(f"held-out {name!r}: prefix must be source: or kind:")
        if field in ("", "source") and value in sources:
            mask |= np.array([r.source == value for r in rows])
        elif field in ("", "kind") and value in kinds:
            mask |= np.array([r.kind == value for r in rows])
        else:
            raise InputError(
                f"unknown held-out source {value!r}: sources are {', '.join(sources)}"
                + (f"; kinds are {', '.join(kinds)}" if kinds else "")
            )
    return mask


def leave_one_source_out(
    rows: Iterable[ManifestRow],
    held_out: str | Sequence[str],
    val_fraction: float = 0.1,
    by: GroupBy = "video",
    seed: int = 0,
) -> dict[str, list[ManifestRow]]:
    """``test`` = the held-out source(s) (or manipulation ``kind``s, or ``source:x`` /
    ``kind:x``), ``train`` and ``val`` = the rest, split by ``by`` group.

    A name is matched against sources first, then kinds. Returns ``{"train", "val", "test"}``;
    ``val`` is empty when ``val_fraction`` is 0.
    """
    rows = list(rows)
    if not rows:
        raise InputError("no rows to split")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    mask = _held_out_mask(rows, held_out)
    test = [r for r, m in zip(rows, mask, strict=True) if m]
    rest = [r for r, m in zip(rows, mask, strict=True) if not m]
    if not rest:
        raise InputError(f"holding out {held_out!r} leaves no rows to train on")
    if val_fraction == 0:
        return {"train": rest, "val": [], "test": test}
    parts = group_split(rest, by, (1.0 - val_fraction, val_fraction), ("train", "val"), seed)
    return {"train": parts["train"], "val": parts["val"], "test": test}


def cluster_labels(features: np.ndarray, n_clusters: int = 20, seed: int = 0) -> np.ndarray:
    """KMeans cluster index per row of ``features`` ``(N, D)``, as ``(N,)`` int."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=n_clusters, random_state=seed, n_init=4)
    return km.fit_predict(np.asarray(features, dtype=np.float64)).astype(np.int64)


def cluster_split(
    rows: Iterable[ManifestRow],
    features: np.ndarray,
    n_clusters: int = 20,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    names: Sequence[str] = ("train", "val", "test"),
    seed: int = 0,
) -> dict[str, list[ManifestRow]]:
    """Split by KMeans clusters of ``features`` ``(N, D)`` (one row each), so that near
    duplicates (which cluster together) stay on one side, as DeepFakeDefenders does.
    """
    rows = list(rows)
    feats = np.asarray(features)
    if feats.ndim != 2 or feats.shape[0] != len(rows):
        raise InputError(
            f"features must be (N, D) with N = {len(rows)} rows, got shape {feats.shape}"
        )
    if not np.isfinite(feats).all():
        raise InputError("features contain NaN or infinite values")
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or n_clusters < 1:
        raise InputError(f"n_clusters must be a positive int, got {n_clusters!r}")
    if n_clusters > len(rows):
        raise InputError(f"n_clusters={n_clusters} exceeds the {len(rows)} rows")
    _check_fractions(fractions, names)
    labels = cluster_labels(feats, n_clusters, seed)
    keys = [f"cluster{c:04d}" for c in labels]
    return _split_groups(rows, keys, fractions, names, seed, "cluster")


def assign_splits(
    rows: Iterable[ManifestRow], splits: dict[str, list[ManifestRow]]
) -> list[ManifestRow]:
    """Copies of ``rows``, in their order, with ``split`` set to the split each is in.

    ``splits`` is what a split function returned for these same row objects. A row in no split
    or in two raises InputError.
    """
    where: dict[int, str] = {}
    for name, part in splits.items():
        for r in part:
            if where.setdefault(id(r), name) != name:
                raise InputError(f"a row of {r.path} is in splits {where[id(r)]} and {name}")
    out = []
    missing = 0
    for r in rows:
        name = where.get(id(r))
        if name is None:
            missing += 1
            continue
        out.append(r.model_copy(update={"split": name}))
    if missing:
        raise InputError(f"{missing} row(s) are in no split")
    return out
