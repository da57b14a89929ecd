"""Adapting a model to a new kind of fake from a team's own faces (``facetrust.train.adapt``):
the offset fit, the exact merge of the correction into the shipped head, and the faces read."""

from __future__ import annotations

import numpy as np
import pytest

from facetrust.detect.experts import LinearHead, RoutedHead
from facetrust.errors import InputError, ModelError
from facetrust.train.adapt import add_to_head, fit_offset, fit_offset_head
from facetrust.train.metrics import roc_auc


def _sig(z):
    return 1 / (1 + np.exp(-z))


def _new_kind(n=120, d=20, seed=0):
    """The shipped head reads feature 0; the new kind's fakes differ in feature 1 alone."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, d))
    y = (np.arange(n) % 2).astype(np.int64)
    x[y == 1, 1] += 2.0
    offset = 1.5 * x[:, 0]  # the shipped logit: blind to the new kind
    groups = np.array([f"f{i // 2}" for i in range(n)])  # two faces per file, one class each
    groups = np.array([f"{c}:{g}" for c, g in zip(y, groups, strict=True)])
    return x, y, offset, groups


def test_the_correction_learns_what_the_shipped_head_misses():
    x, y, offset, groups = _new_kind()
    head, info = fit_offset_head(offset, x, y, groups, np.zeros(20), np.ones(20))
    assert roc_auc(y, _sig(offset)) < 0.65  # the shipped head at chance on it
    assert info["C"] > 0 and roc_auc(y, _sig(info["oof"])) > 0.85
    # on top of the shipped logit it reads feature 1, and takes back some of the shipped
    # head's feature 0, which says nothing about this kind; the others it leaves near zero
    assert head.weight[1] > 2 * np.abs(head.weight[2:]).max() and head.weight[0] < 0
    x2, y2, off2, _ = _new_kind(seed=1)
    assert roc_auc(y2, _sig(off2 + head(x2))) > 0.85


def test_no_correction_keeps_the_shipped_ranking():
    """C 0 is the intercept alone: the same order as the shipped logit."""
    x, y, offset, _ = _new_kind()
    delta, b = fit_offset(offset, x, y, 0.0)
    assert not delta.any() and np.isfinite(b)
    # and a tiny C moves little; a larger one more
    small = np.abs(fit_offset(offset, x, y, 1e-4)[0]).sum()
    large = np.abs(fit_offset(offset, x, y, 1e-1)[0]).sum()
    assert 0 < small < large


@pytest.mark.parametrize("d", [20, 300])  # more rows than features, and fewer (CLIP's case)
def test_the_exact_solve_is_the_penalised_minimum(d, monkeypatch):
    """Newton in the rows' span gives what a generic optimiser finds on ``delta`` itself, and
    the gradient of the penalised loss is zero there."""
    import facetrust.train.adapt as adapt

    rng = np.random.default_rng(3)
    x, y, offset, _ = _new_kind(n=120, d=d)
    w = rng.uniform(0.5, 2.0, len(y))
    delta, b = fit_offset(offset, x, y, 0.05, w)
    t = offset + x @ delta + b
    g = w * (_sig(t) - y)
    assert np.abs(x.T @ g + delta / 0.05).max() < 1e-5 and abs(g.sum()) < 1e-6
    q, back = adapt.row_basis(x)  # what cross-validation reuses across strengths
    assert np.allclose(q @ q.T, x @ x.T) and q.shape[1] <= min(x.shape)
    again, b_again = fit_offset(offset, x, y, 0.05, w, (q, back))
    assert np.allclose(again, delta) and np.isclose(b_again, b)
    monkeypatch.setattr(adapt, "NEWTON_MAX", 1)  # the L-BFGS path for very large fits
    delta2, b2 = fit_offset(offset, x, y, 0.05, w)
    assert np.abs(delta2 - delta).max() < 1e-3 and abs(b2 - b) < 1e-3


def test_too_few_files_is_a_clear_error():
    x, y, offset, _ = _new_kind(n=10)
    one_file_each = np.array([f"{c}" for c in y])
    with pytest.raises(InputError, match="at least two"):
        fit_offset_head(offset, x, y, one_file_each, np.zeros(20), np.ones(20))


def _head(rng, d, mean=0.0):
    return LinearHead(
        rng.normal(mean, 1, d), rng.uniform(0.5, 2, d), rng.normal(0, 1, d), float(rng.normal())
    )


@pytest.mark.parametrize("factor", [1.0, 0.4])
def test_the_merge_is_exact_for_linear_and_routed_heads(factor):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 2, (50, 8))
    corr = _head(rng, 8, mean=1.0)
    linear = _head(rng, 8)
    merged = add_to_head(linear, corr, factor)
    assert isinstance(merged, LinearHead)
    np.testing.assert_allclose(merged(x), linear(x) + factor * corr(x), atol=1e-9)
    routed = RoutedHead(_head(rng, 8), _head(rng, 8), _head(rng, 8))
    merged = add_to_head(routed, corr, factor)
    assert isinstance(merged, RoutedHead)
    np.testing.assert_allclose(merged(x), routed(x) + factor * corr(x), atol=1e-9)
    np.testing.assert_allclose(merged.route(x), routed.route(x))  # the router is untouched
    with pytest.raises(ModelError, match="reads 8 features"):
        add_to_head(_head(rng, 5), corr)
