"""The within-source pairwise head: it learns what separates fakes from reals *of one source*,
not what separates the sources."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from facetrust.errors import InputError
from facetrust.train.fusion import fit_linear_head
from facetrust.train.pairwise import fit_pairwise_head


def rigged(seed=0, n=300):
    """Feature 0 shifts whole sources (the fake-only source far along it, the real-only one
    far against it); feature 1 is the fake cue inside every source; 2-5 are noise."""
    rng = np.random.default_rng(seed)
    x, y, g = [], [], []
    for name, fakes, reals, shift in (
        ("a", n, n, 0.0),
        ("b", n, n, 1.0),
        ("fakes-only", n, 0, 6.0),
        ("reals-only", 0, n, -6.0),
    ):
        for label, count in ((1, fakes), (0, reals)):
            f = rng.normal(size=(count, 6))
            f[:, 0] += shift
            f[:, 1] += 0.8 * label
            x.append(f)
            y += [label] * count
            g += [name] * count
    return np.concatenate(x), np.array(y), np.array(g)


def test_pairwise_head_learns_the_within_source_cue_not_the_source():
    x, y, g = rigged()
    pointwise, _ = fit_linear_head(x, y, g, (1.0,))
    pairwise, info = fit_pairwise_head(x, y, g, c=1.0)
    w_point = pointwise.weight / pointwise.scale
    w_pair = pairwise.weight / pairwise.scale
    # the pointwise head leans on the source shift; the pairwise head on the fake cue alone
    assert abs(w_point[0]) > 0.3 * abs(w_point[1])
    assert abs(w_pair[0]) < 0.1 * abs(w_pair[1])
    assert info["groups"] == 2 and info["pairs"] == {"a": 300 * 300, "b": 300 * 300}
    # a new source whose reals sit where the fake-only source was: the cue still ranks them
    xt, yt, gt = rigged(seed=1)
    xt, yt = xt[gt == "a"], yt[gt == "a"]
    xt[yt == 0, 0] += 2.0  # its reals shifted toward the fake-only source
    assert roc_auc_score(yt, pairwise(xt)) > 0.65
    assert roc_auc_score(yt, pointwise(xt)) < 0.5


def test_pairwise_head_probabilities_are_platt_scaled():
    x, y, g = rigged()
    head, _ = fit_pairwise_head(x, y, g, c=1.0)
    p = 1 / (1 + np.exp(-head(x)))
    assert abs(p.mean() - y.mean()) < 0.02  # Platt scaling matches the base rate


def test_pairwise_head_refuses_data_without_a_two_class_source():
    x, y, g = rigged()
    one_class = np.isin(g, ["fakes-only", "reals-only"])
    with pytest.raises(InputError, match="both real and fake"):
        fit_pairwise_head(x[one_class], y[one_class], g[one_class])
    with pytest.raises(InputError, match="C must be"):
        fit_pairwise_head(x, y, g, c=0)
    with pytest.raises(InputError, match="one row each"):
        fit_pairwise_head(x, y[:-1], g)
