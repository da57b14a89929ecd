"""Shortcut diagnostics flag a rigged data set and stay quiet on a fair one."""

import numpy as np
import pytest

from facetrust.errors import InputError
from facetrust.train.fusion import fit_linear_head
from facetrust.train.shortcuts import held_out_folds, real_vs_real, source_predictability


def _data(rng, rigged: bool, n: int = 150):
    """4 sources x (n reals + n fakes); the fake cue is feature 0. Rigged: feature 1 encodes
    the source, and the detector's probability of reals depends on the source."""
    rows = []
    for si, s in enumerate(["a", "b", "c", "d"]):
        for y in (0, 1):
            for i in range(n):
                f = rng.normal(0, 1, 6)
                f[0] += 2.0 * y
                if rigged:
                    f[1] += 3.0 * si
                p = 1 / (1 + np.exp(-(f[0] - 1 + (1.5 * si if rigged else 0.0))))
                rows.append((f, y, s, f"{s}-{y}-{i}", p))
    x, y, src, grp, p = (np.array(v) for v in zip(*rows, strict=True))
    return x, y, src, grp, p


@pytest.mark.parametrize("rigged", [True, False])
def test_source_and_real_vs_real_diagnostics(rigged):
    x, y, src, grp, p = _data(np.random.default_rng(0), rigged)
    found = source_predictability(x, src, grp, labels=y, name="test features")
    acc = found.figures["reals"]["balanced_accuracy"]
    assert found.figures["all"]["chance"] == 0.25
    rvr = real_vs_real(p, src, y)
    assert len(rvr.figures["pairs"]) == 6
    if rigged:
        assert acc > 0.6 and any("predict the source of reals" in f for f in found.flags)
        assert abs(rvr.figures["worst"] - 0.5) > 0.3 and len(rvr.flags) >= 3
    else:
        assert acc < 0.45 and found.flags == []
        assert abs(rvr.figures["worst"] - 0.5) < 0.2 and rvr.flags == []


def test_held_out_folds_flag_a_kind_the_head_cannot_see():
    rng = np.random.default_rng(1)
    rows = []
    for s, cue in (("a", 0), ("b", 0), ("c", 1)):  # source c's fakes show on another feature
        for y in (0, 1):
            for _ in range(80):
                f = rng.normal(0, 1, 4)
                f[cue] += 2.5 * y
                rows.append((f, y, s))
    x, y, src = (np.array(v) for v in zip(*rows, strict=True))

    def fit(xt, yt, gt):
        head, _ = fit_linear_head(xt, yt, gt, c_grid=(1.0,))
        return lambda z: 1 / (1 + np.exp(-head(z)))

    found = held_out_folds(x, y, src, {"kind_a": ["a"], "kind_c": ["c"]}, fit, name="toy")
    folds = found.figures["folds"]
    assert folds["kind_a"]["auc"] > 0.9  # same cue as the training kinds
    assert folds["kind_c"]["auc"] < 0.7 and any("kind_c AUC" in f for f in found.flags)
    assert found.figures["worst_auc"] == folds["kind_c"]["auc"]


def test_bad_shapes_are_refused():
    with pytest.raises(InputError, match="one row each"):
        source_predictability(np.zeros((3, 2)), ["a", "b"], ["1", "2", "3"])
