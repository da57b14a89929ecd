"""Paired, source-balanced batches: every fake in a batch has a real of the same source beside it.

A detector trained on batches mixed across sources can learn the *source* (its camera, crop,
codec) instead of the manipulation, and a source with one class only makes the source itself
predict the label. B-Free (Guillaro et al., CVPR 2025) pairs each fake with its real twin;
"Fake or JPEG?" (Grommelt et al., 2024) shows how codec and size differences between the
classes are learnt instead. ``PairedBatchSampler`` yields batches of *pairs* (a real, a fake):

- a source with reals and fakes: each pair is a real and a fake of that source; a share
  ``pseudo_fraction`` of the fakes are pseudo-fakes made from the pair's own real (its twin,
  content-aligned; ``BatchItem(index_of_the_real, pseudo=True)``);
- a source with reals only: each real is paired with a pseudo-fake of itself (SBI, Shiohara &
  Yamasaki, CVPR 2022: reals + self-made fakes), so it is no longer one-class;
- a one-class source that cannot be paired within itself (fakes only; or reals only when
  ``pseudo_fraction == 0``): its rows are drawn ``one_class_weight`` times as often as their
  count says (down-weighted) and each is paired with a row of the other class from another
  source whose size (shorter-side bin) and codec (format and JPEG-quality bin) match, as
  :mod:`facetrust.data.bias` bins them (``match_partners``); without a match, the same size bin,
  then the same codec bin, then any.

Pairs per epoch, source ``s`` with ``R`` reals and ``F`` fakes, ``w`` = ``source_weights[s]``
(default 1): ``round(w * max(R, F))`` for a source with reals and fakes or reals only (the
fakes then pseudo), ``round(w * one_class_weight * n)`` for a one-class source of ``n`` rows.
Rows are taken from an endless sequence of fresh shuffles of each source's rows, one epoch
after another, so a source with fewer rows than pairs repeats rows, and one with more sees
the rest in the next epochs: every row is drawn eventually. The pairs of all sources are
shuffled together and cut into batches of ``batch_size // 2`` pairs (real first, then fake).

Deterministic: the order depends only on ``seed`` and the epoch; ``__iter__`` uses ``epoch``
and then advances it (``set_epoch`` sets it, as for ``DistributedSampler``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from torch.utils.data import Sampler

from facetrust.data.bias import quality_bin, resolution_bin, row_format, shorter_side
from facetrust.data.manifest import ManifestRow
from facetrust.errors import InputError

__all__ = ["BatchItem", "PairedBatchSampler", "SourcePlan", "match_key"]


class BatchItem(NamedTuple):
    """One slot of a batch: manifest row ``index``; ``pseudo`` -> a pseudo-fake made from that
    row (a real), labelled fake; otherwise the row itself with its own label."""

    index: int
    pseudo: bool = False

    @property
    def y(self) -> int | None:
        """1 for a pseudo-fake; ``None`` (the row's own label) otherwise."""
        return 1 if self.pseudo else None


@dataclass(frozen=True)
class SourcePlan:
    """How one source is drawn each epoch.

    Attributes:
        source: the source name.
        reals, fakes: its row counts.
        mode: ``"paired"`` (reals and fakes), ``"pseudo"`` (reals + their pseudo-fakes) or
            ``"matched"`` (one class, paired with matching rows of other sources).
        pairs: pairs per epoch.
        pseudo: of those, pairs whose fake is a pseudo-fake.
    """

    source: str
    reals: int
    fakes: int
    mode: str
    pairs: int
    pseudo: int


def match_key(row: ManifestRow) -> tuple[str | None, str | None]:
    """``(shorter-side bin, codec bin)`` of a row, the bins of the bias report."""
    return resolution_bin(shorter_side(row)), quality_bin(row_format(row), row.jpeg_quality)


def _stream(indices: np.ndarray, seed: int, key: int, start: int, count: int) -> np.ndarray:
    """Items ``start .. start + count`` of the endless concatenation of shuffles of
    ``indices`` (shuffle ``k`` seeded by ``(seed, key, k)``)."""
    n = len(indices)
    if count <= 0 or n == 0:
        return np.empty(0, dtype=np.int64)
    out = []
    pos = start
    while len(out) < count:
        k, offset = divmod(pos, n)
        perm = np.random.default_rng([seed, key, k]).permutation(indices)
        take = perm[offset : offset + count - len(out)]
        out.extend(int(i) for i in take)
        pos += len(take)
    return np.asarray(out, dtype=np.int64)


class PairedBatchSampler(Sampler[list[BatchItem]]):
    """Batches of (real, fake) pairs of one source each (see the module docstring).

    Args:
        rows: manifest rows (the dataset's index order).
        batch_size: even; ``batch_size // 2`` pairs per batch.
        pseudo_fraction: share of the fakes of two-class sources that are pseudo-fakes of the
            pair's real; reals-only sources get pseudo-fakes whenever this is > 0.
        one_class_weight: draw rate of a one-class source's rows (0 leaves them out).
        match_partners: pair one-class rows with rows of matching size and codec; otherwise
            with any row of the other class.
        source_weights: ``{source: weight >= 0}`` multiplying a source's pairs (default 1).
        drop_last: drop the last, smaller batch.
        seed: the seed of every draw.
    """

    def __init__(
        self,
        rows: Sequence[ManifestRow],
        batch_size: int,
        *,
        pseudo_fraction: float = 0.5,
        one_class_weight: float = 0.5,
        match_partners: bool = True,
        source_weights: Mapping[str, float] | None = None,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        rows = list(rows)
        if not rows:
            raise InputError("no manifest rows to sample from")
        if not isinstance(batch_size, int) or batch_size < 2 or batch_size % 2:
            raise InputError(f"batch_size must be an even integer >= 2, got {batch_size!r}")
        if not 0.0 <= pseudo_fraction <= 1.0:
            raise InputError(f"pseudo_fraction must be in [0, 1], got {pseudo_fraction}")
        if not 0.0 <= one_class_weight <= 1.0:
            raise InputError(f"one_class_weight must be in [0, 1], got {one_class_weight}")
        weights = dict(source_weights or {})
        sources = sorted({r.source for r in rows})
        unknown = sorted(set(weights) - set(sources))
        if unknown:
            raise InputError(f"source_weights name unknown sources {unknown}: have {sources}")
        if any(not np.isfinite(w) or w < 0 for w in weights.values()):
            raise InputError(f"source weights must be finite and >= 0: {weights}")
        self.batch_size = batch_size
        self.pseudo_fraction = float(pseudo_fraction)
        self.one_class_weight = float(one_class_weight)
        self.match_partners = bool(match_partners)
        self.source_weights = weights
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.epoch = 0

        labels = np.array([r.y for r in rows])
        self._keys = [match_key(r) for r in rows]
        self._reals: dict[str, np.ndarray] = {}
        self._fakes: dict[str, np.ndarray] = {}
        by_source = np.array([sources.index(r.source) for r in rows])
        plans = []
        for k, s in enumerate(sources):
            reals = np.flatnonzero((by_source == k) & (labels == 0))
            fakes = np.flatnonzero((by_source == k) & (labels == 1))
            self._reals[s], self._fakes[s] = reals, fakes
            w = float(weights.get(s, 1.0))
            if len(reals) and len(fakes):
                pairs = round(w * max(len(reals), len(fakes)))
                plan = SourcePlan(
                    s, len(reals), len(fakes), "paired", pairs, round(self.pseudo_fraction * pairs)
                )
            elif len(reals) and self.pseudo_fraction > 0:
                pairs = round(w * len(reals))
                plan = SourcePlan(s, len(reals), 0, "pseudo", pairs, pairs)
            else:
                n = len(reals) + len(fakes)
                pairs = round(w * self.one_class_weight * n)
                plan = SourcePlan(s, len(reals), len(fakes), "matched", pairs, 0)
            plans.append(plan)
        self.plans: dict[str, SourcePlan] = {p.source: p for p in plans}

        # partner pools for one-class sources: rows of the other class from other sources
        self._pools: dict[str, np.ndarray] = {}
        self._by_key: dict[str, dict[tuple, np.ndarray]] = {}
        for p in plans:
            if p.mode != "matched" or p.pairs == 0:
                continue
            other = 1 if p.reals else 0
            pool = np.flatnonzero((labels == other) & (by_source != sources.index(p.source)))
            if not len(pool):
                kind = "fakes" if other else "reals"
                raise InputError(
                    f"source {p.source!r} has one class and no other source has {kind} to pair "
                    "it with: give it a source_weights of 0 or add data"
                )
            self._pools[p.source] = pool
            self._by_key[p.source] = self._group(pool)

    def __repr__(self) -> str:
        return (
            f"PairedBatchSampler(rows={sum(p.reals + p.fakes for p in self.plans.values())}, "
            f"batch_size={self.batch_size}, pseudo_fraction={self.pseudo_fraction}, "
            f"one_class_weight={self.one_class_weight}, match_partners={self.match_partners}, "
            f"sources={len(self.plans)}, drop_last={self.drop_last}, seed={self.seed})"
        )

    @property
    def pairs_per_epoch(self) -> int:
        return sum(p.pairs for p in self.plans.values())

    def __len__(self) -> int:
        per = self.batch_size // 2
        n = self.pairs_per_epoch
        return n // per if self.drop_last else -(-n // per)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _group(self, pool: np.ndarray) -> dict[tuple, np.ndarray]:
        """Pool rows by ``(size, codec)``, ``(size, None)`` and ``(None, codec)``."""
        groups: dict[tuple, list[int]] = {}
        for j in pool:
            size, codec = self._keys[j]
            for key in ((size, codec), (size, None), (None, codec)):
                groups.setdefault(key, []).append(int(j))
        return {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}

    def _partner(self, i: int, source: str, rng: np.random.Generator) -> int:
        """A row of the other class for one-class row ``i``: the same size and codec bins
        when possible, then the same size bin, then the same codec bin, then any."""
        pool = self._pools[source]
        if self.match_partners:
            size, codec = self._keys[i]
            groups = self._by_key[source]
            for key in ((size, codec), (size, None), (None, codec)):
                cand = groups.get(key)
                if cand is not None and len(cand):
                    return int(cand[rng.integers(len(cand))])
        return int(pool[rng.integers(len(pool))])

    def epoch_pairs(self, epoch: int) -> list[tuple[BatchItem, BatchItem]]:
        """The ``(real, fake)`` pairs of one epoch, in batch order."""
        rng = np.random.default_rng([self.seed, epoch, 1])
        pairs: list[tuple[BatchItem, BatchItem]] = []
        for k, (s, plan) in enumerate(sorted(self.plans.items())):
            n = plan.pairs
            if n == 0:
                continue
            reals, fakes = self._reals[s], self._fakes[s]
            if plan.mode == "matched":
                own = reals if plan.reals else fakes
                rows = _stream(own, self.seed, 2 * k, epoch * n, n)
                for i in rows:
                    j = self._partner(int(i), s, rng)
                    real, fake = (int(i), j) if plan.reals else (j, int(i))
                    pairs.append((BatchItem(real), BatchItem(fake)))
                continue
            real_rows = _stream(reals, self.seed, 2 * k, epoch * n, n)
            n_fake = n - plan.pseudo
            fake_rows = _stream(fakes, self.seed, 2 * k + 1, epoch * n_fake, n_fake)
            is_pseudo = np.zeros(n, bool)
            is_pseudo[rng.choice(n, plan.pseudo, replace=False)] = True
            it = iter(fake_rows)
            for r, pseudo in zip(real_rows, is_pseudo, strict=True):
                fake = BatchItem(int(r), True) if pseudo else BatchItem(int(next(it)))
                pairs.append((BatchItem(int(r)), fake))
        order = rng.permutation(len(pairs))
        return [pairs[i] for i in order]

    def __iter__(self) -> Iterator[list[BatchItem]]:
        epoch = self.epoch
        self.epoch += 1
        pairs = self.epoch_pairs(epoch)
        per = self.batch_size // 2
        for b in range(len(self)):
            chunk = pairs[b * per : (b + 1) * per]
            yield [item for pair in chunk for item in pair]
