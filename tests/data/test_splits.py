from __future__ import annotations

import numpy as np
import pytest

from facetrust.data import (
    ManifestRow,
    assign_splits,
    cluster_split,
    group_split,
    leave_one_source_out,
)
from facetrust.errors import InputError


def random_rows(seed: int, n: int | None = None) -> list[ManifestRow]:
    """Rows from a few sources, videos of 1-8 frames, people in several videos, both labels."""
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(60, 300))
    sources = [f"src{k}" for k in range(int(rng.integers(2, 6)))]
    rows = []
    while len(rows) < n:
        src = str(rng.choice(sources))
        label = "fake" if rng.random() < 0.45 else "real"
        vid = f"v{len(rows)}"
        person = f"p{int(rng.integers(0, 15))}"
        kind = "gan" if src == "src1" else None
        for f in range(int(rng.integers(1, 9))):
            rows.append(
                ManifestRow(
                    path=f"{src}/{vid}.mp4",
                    label=label,
                    source=src,
                    video_id=vid,
                    frame=f,
                    identity=person,
                    kind=kind,
                )
            )
    return rows


def groups_of(split: dict[str, list[ManifestRow]], by: str) -> dict[str, set[str]]:
    return {name: {r.group(by) for r in rows} for name, rows in split.items()}


def assert_partition(rows, split):
    ids = sorted(id(r) for part in split.values() for r in part)
    assert ids == sorted(id(r) for r in rows)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("by", ["source", "video", "identity"])
def test_no_group_leaks_across_splits(seed, by):
    rows = random_rows(seed)
    n_groups = len({r.group(by) for r in rows})
    if n_groups < 3:
        with pytest.raises(InputError, match="a split would be empty"):
            group_split(rows, by, seed=seed)
        return
    split = group_split(rows, by, seed=seed)
    assert list(split) == ["train", "val", "test"]
    assert_partition(rows, split)
    g = groups_of(split, by)
    assert (
        not (g["train"] & g["val"]) and not (g["train"] & g["test"]) and not (g["val"] & g["test"])
    )
    assert all(split[name] for name in split)  # no empty split
    # the order of the input is kept inside each split
    order = {id(r): i for i, r in enumerate(rows)}
    for part in split.values():
        idx = [order[id(r)] for r in part]
        assert idx == sorted(idx)


@pytest.mark.parametrize("seed", range(5))
def test_video_split_meets_fractions_per_class(seed):
    rows = random_rows(seed, n=2000)
    split = group_split(rows, "video", seed=seed)
    for label in ("real", "fake"):
        total = sum(r.label == label for r in rows)
        for name, frac in zip(split, (0.8, 0.1, 0.1), strict=True):
            got = sum(r.label == label for r in split[name]) / total
            assert abs(got - frac) < 0.02, (label, name, got)


def test_group_split_is_deterministic_and_seeded():
    rows = random_rows(3, n=400)

    def ids(split):
        return {k: [id(r) for r in v] for k, v in split.items()}

    assert ids(group_split(rows, "video", seed=7)) == ids(group_split(rows, "video", seed=7))
    assert ids(group_split(rows, "video", seed=7)) != ids(group_split(rows, "video", seed=8))


def test_group_split_custom_fractions_and_names():
    rows = random_rows(1, n=300)
    split = group_split(rows, "video", fractions=(0.5, 0.5), names=("a", "b"))
    assert set(split) == {"a", "b"}
    assert abs(len(split["a"]) - len(split["b"])) < 40
    zero = group_split(rows, "video", fractions=(0.9, 0.1, 0.0))
    assert zero["test"] == [] and zero["val"]


def test_few_groups_still_fill_every_split():
    rows = [ManifestRow(path=f"{g}.jpg", label="real", source="s", video_id=g) for g in "abc"]
    rows += [ManifestRow(path="a2.jpg", label="real", source="s", video_id="a")]
    split = group_split(rows, "video", seed=0)
    assert sorted(len({r.video_id for r in p}) for p in split.values()) == [1, 1, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fractions": (0.8, 0.1, 0.2)}, "sum to 1"),
        ({"fractions": (0.9, 0.1)}, "2 fractions for 3 split names"),
        ({"fractions": (1.2, -0.1, -0.1)}, ">= 0"),
        ({"names": ("a", "a", "b")}, "must differ"),
        ({"by": "camera"}, "unknown grouping"),
    ],
)
def test_group_split_rejects_bad_requests(kwargs, message):
    with pytest.raises(InputError, match=message):
        group_split(random_rows(0), **kwargs)


def test_group_split_too_few_groups_and_no_rows():
    rows = [ManifestRow(path="a.jpg", label="real", source="one")]
    with pytest.raises(InputError, match=r"only 1 source group\(s\) for 3 splits"):
        group_split(rows, "source")
    with pytest.raises(InputError, match="no rows"):
        group_split([], "video")


@pytest.mark.parametrize("seed", range(4))
def test_leave_one_source_out(seed):
    rows = random_rows(seed, n=400)
    held = sorted({r.source for r in rows})[-1]
    split = leave_one_source_out(rows, held, val_fraction=0.2, seed=seed)
    assert set(split) == {"train", "val", "test"}
    assert {r.source for r in split["test"]} == {held}
    assert len(split["test"]) == sum(r.source == held for r in rows)
    assert held not in {r.source for r in split["train"] + split["val"]}
    g = groups_of(split, "video")
    assert not (g["train"] & g["val"])
    assert split["val"]
    assert_partition(rows, split)


def test_leave_out_several_sources_or_a_kind():
    rows = random_rows(5, n=400)
    split = leave_one_source_out(rows, ["src0", "src1"], seed=1)
    assert {r.source for r in split["test"]} == {"src0", "src1"}
    by_kind = leave_one_source_out(rows, "gan", val_fraction=0.0)
    assert {r.kind for r in by_kind["test"]} == {"gan"} and by_kind["val"] == []
    explicit = leave_one_source_out(rows, "kind:gan", val_fraction=0.0)
    assert [id(r) for r in explicit["test"]] == [id(r) for r in by_kind["test"]]


def test_leave_one_source_out_errors():
    rows = random_rows(2)
    with pytest.raises(InputError, match="unknown held-out source 'nope': sources are src0"):
        leave_one_source_out(rows, "nope")
    with pytest.raises(InputError, match="val_fraction"):
        leave_one_source_out(rows, "src0", val_fraction=1.0)
    with pytest.raises(InputError, match="leaves no rows"):
        leave_one_source_out(rows, sorted({r.source for r in rows}))
    with pytest.raises(InputError, match="prefix"):
        leave_one_source_out(rows, "camera:x")


def _blobs(seed=0, k=6, per=20):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 50, (k, 8))
    blob = np.repeat(np.arange(k), per)
    feats = centres[blob] + rng.normal(0, 0.5, (k * per, 8))
    labels = np.where(rng.random(k * per) < 0.5, "real", "fake")
    rows = [
        ManifestRow(path=f"img{i}.jpg", label=str(lab), source="s") for i, lab in enumerate(labels)
    ]
    return rows, feats, blob


def test_cluster_split_keeps_clusters_intact():
    rows, feats, blob = _blobs()
    split = cluster_split(rows, feats, n_clusters=6, seed=0)
    assert_partition(rows, split)
    index = {id(r): i for i, r in enumerate(rows)}
    where = {}
    for name, part in split.items():
        assert part
        for r in part:
            b = blob[index[id(r)]]
            assert where.setdefault(b, name) == name  # a blob never spans two splits
    again = cluster_split(rows, feats, n_clusters=6, seed=0)
    assert {k: [id(r) for r in v] for k, v in again.items()} == {
        k: [id(r) for r in v] for k, v in split.items()
    }


def test_cluster_split_errors():
    rows, feats, _ = _blobs()
    with pytest.raises(InputError, match=r"features must be \(N, D\)"):
        cluster_split(rows, feats[:-1])
    with pytest.raises(InputError, match="exceeds"):
        cluster_split(rows[:5], feats[:5], n_clusters=6)
    with pytest.raises(InputError, match="sum to 1"):
        cluster_split(rows, feats, fractions=(0.5, 0.1, 0.1))
    bad = feats.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        cluster_split(rows, bad)


def test_assign_splits_copies_in_input_order():
    rows = random_rows(4, n=100)
    split = group_split(rows, "video")
    out = assign_splits(rows, split)
    assert [r.path for r in out] == [r.path for r in rows]
    assert all(r.split is None for r in rows)  # originals untouched
    named = {id(r): name for name, part in split.items() for r in part}
    assert [r.split for r in out] == [named[id(r)] for r in rows]
    with pytest.raises(InputError, match="in no split"):
        assign_splits(rows, {"train": split["train"]})
    with pytest.raises(InputError, match="splits train and val"):
        assign_splits(rows, {"train": rows, "val": rows[:1]})
