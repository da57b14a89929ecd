"""Paired, source-balanced batches."""

from __future__ import annotations

from collections import Counter

import pytest

from facetrust.data.manifest import ManifestRow
from facetrust.data.sampling import BatchItem, PairedBatchSampler, match_key
from facetrust.errors import InputError


def _rows(spec: list[tuple[str, str, int, int, str, int | None]]) -> list[ManifestRow]:
    rows = []
    for source, label, n, side, fmt, quality in spec:
        for i in range(n):
            rows.append(
                ManifestRow(
                    path=f"{source}/{label}/{i}.x",
                    label=label,
                    source=source,
                    width=side,
                    height=side,
                    format=fmt,
                    jpeg_quality=quality,
                )
            )
    return rows


PAIRED = [  # a source with both classes, one with reals only (small JPEG), one with big PNG reals
    ("two", "real", 6, 256, "JPEG", 85),
    ("two", "fake", 10, 256, "JPEG", 85),
    ("small", "real", 5, 120, "JPEG", 70),
    ("big", "real", 6, 512, "PNG", None),
]
FAKE_ONLY = [("gen", "fake", 8, 512, "PNG", None)]


def _source(rows, item: BatchItem) -> str:
    return rows[item.index].source


def _is_fake(rows, item: BatchItem) -> bool:
    return item.pseudo or rows[item.index].label == "fake"


def test_every_batch_balances_the_classes_within_each_source():
    rows = _rows(PAIRED)
    sampler = PairedBatchSampler(rows, batch_size=6, seed=0)
    assert {s: p.mode for s, p in sampler.plans.items()} == {
        "two": "paired",
        "small": "pseudo",
        "big": "pseudo",
    }
    batches = list(sampler)
    assert len(batches) == len(sampler) == -(-sampler.pairs_per_epoch // 3)
    for batch in batches:
        assert len(batch) % 2 == 0 and len(batch) <= 6
        count = Counter((_source(rows, it), _is_fake(rows, it)) for it in batch)
        for s in ("two", "small", "big"):
            assert count[(s, False)] == count[(s, True)], (s, batch)
        for real, fake in zip(batch[::2], batch[1::2], strict=True):
            assert not _is_fake(rows, real) and _is_fake(rows, fake)
            if fake.pseudo:  # a pseudo-fake is made from its pair's real: content-aligned twin
                assert fake.index == real.index


def test_pseudo_fraction_of_a_two_class_source():
    rows = _rows(PAIRED)
    for fraction, expected in ((0.0, 0), (0.5, 5), (1.0, 10)):
        sampler = PairedBatchSampler(rows, 4, pseudo_fraction=fraction, seed=1)
        assert sampler.plans["two"].pairs == 10 and sampler.plans["two"].pseudo == expected
        fakes = [f for r, f in sampler.epoch_pairs(0) if _source(rows, r) == "two"]
        assert sum(f.pseudo for f in fakes) == expected


def test_one_class_source_is_down_weighted_and_paired_with_matching_reals():
    rows = _rows(PAIRED + FAKE_ONLY)
    sampler = PairedBatchSampler(rows, 8, one_class_weight=0.5, seed=2)
    plan = sampler.plans["gen"]
    assert plan.mode == "matched" and plan.pairs == 4  # half of its 8 rows per epoch
    for epoch in range(3):
        gen = [(r, f) for r, f in sampler.epoch_pairs(epoch) if _source(rows, f) == "gen"]
        assert len(gen) == 4
        for real, _fake in gen:
            # the only reals of the same size (512) and codec (PNG) are those of "big"
            assert _source(rows, real) == "big" and not real.pseudo
            assert match_key(rows[real.index]) == match_key(rows[_fake.index])
    unmatched = PairedBatchSampler(rows, 8, match_partners=False, seed=2)
    partners = {
        _source(rows, r) for e in range(6) for r, f in unmatched.epoch_pairs(e) if f.index >= 27
    }
    assert partners - {"big"}  # without matching, reals of other sizes and codecs come too
    assert PairedBatchSampler(rows, 8, one_class_weight=0.0).plans["gen"].pairs == 0


def test_reals_only_without_pseudo_fakes_are_matched_with_fakes():
    rows = _rows(PAIRED + FAKE_ONLY)
    sampler = PairedBatchSampler(rows, 4, pseudo_fraction=0.0, one_class_weight=1.0, seed=3)
    assert sampler.plans["small"].mode == "matched" and sampler.plans["big"].mode == "matched"
    for real, fake in sampler.epoch_pairs(0):
        assert not real.pseudo and not fake.pseudo and rows[fake.index].label == "fake"
        if _source(rows, real) == "big":
            assert _source(rows, fake) == "gen"  # 512 px PNG, like the big reals
    with pytest.raises(InputError, match="one class"):
        PairedBatchSampler(_rows(FAKE_ONLY), 4)
    with pytest.raises(InputError, match="one class"):
        PairedBatchSampler(_rows(PAIRED[2:]), 4, pseudo_fraction=0.0)


def test_deterministic_with_a_seed():
    rows = _rows(PAIRED + FAKE_ONLY)
    a, b = PairedBatchSampler(rows, 6, seed=5), PairedBatchSampler(rows, 6, seed=5)
    epochs_a = [list(a) for _ in range(3)]
    assert epochs_a == [list(b) for _ in range(3)]
    assert epochs_a[0] != epochs_a[1]  # a new order each epoch
    a.set_epoch(1)
    assert list(a) == epochs_a[1] and a.epoch == 2
    assert list(PairedBatchSampler(rows, 6, seed=6)) != epochs_a[0]


def test_every_row_is_drawn_eventually():
    rows = _rows(PAIRED + FAKE_ONLY)
    sampler = PairedBatchSampler(rows, 4, one_class_weight=0.5, seed=7)
    seen: set[int] = set()
    for _ in range(2):  # "two" shows 5 of its 10 fakes and "gen" 4 of 8 per epoch
        seen |= {it.index for batch in sampler for it in batch if not it.pseudo}
    assert seen == set(range(len(rows)))


def test_weights_drop_last_and_a_dataloader():
    from torch.utils.data import DataLoader

    rows = _rows(PAIRED)
    sampler = PairedBatchSampler(rows, 4, source_weights={"two": 0.5, "big": 0}, drop_last=True)
    assert sampler.plans["two"].pairs == 5 and sampler.plans["big"].pairs == 0
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5 and all(len(b) == 4 for b in batches)

    class Items:
        def __getitem__(self, item: BatchItem) -> tuple[int, int]:
            return item.index, 1 if item.pseudo else rows[item.index].y

        def __len__(self) -> int:
            return len(rows)

    sampler.set_epoch(0)
    loader = DataLoader(Items(), batch_sampler=sampler, collate_fn=list)
    got = list(loader)
    assert len(got) == 5 and all([y for _, y in b] == [0, 1, 0, 1] for b in got)


def test_bad_input():
    rows = _rows(PAIRED)
    for kwargs in (
        {"batch_size": 5},
        {"batch_size": 0},
        {"batch_size": 4, "pseudo_fraction": 1.5},
        {"batch_size": 4, "one_class_weight": -0.1},
        {"batch_size": 4, "source_weights": {"nowhere": 1.0}},
        {"batch_size": 4, "source_weights": {"two": -1.0}},
    ):
        with pytest.raises(InputError):
            PairedBatchSampler(rows, **kwargs)
    with pytest.raises(InputError, match="no manifest rows"):
        PairedBatchSampler([], 4)
    assert "batch_size=4" in repr(PairedBatchSampler(rows, 4, seed=9))
