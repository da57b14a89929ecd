import numpy as np
import pytest

from facetrust.detect.calibration import (
    apply_calibration,
    choose_threshold,
    fit_calibration,
    fit_isotonic,
    fit_platt,
    fit_temperature,
    sigmoid,
    validate_calibration,
)
from facetrust.errors import InputError
from facetrust.train.metrics import ece_score


@pytest.fixture(scope="module")
def overconfident():
    """Logits 4x too large: labels follow sigmoid(true_logit), the model says 4 * true_logit."""
    rng = np.random.default_rng(0)
    true = rng.normal(0.0, 1.5, 12000)
    y = (rng.uniform(size=true.size) < sigmoid(true)).astype(int)
    z = 4.0 * true
    return (z[:6000], y[:6000]), (z[6000:], y[6000:])


def _nll(p, y):
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@pytest.mark.parametrize("method", ["temperature", "platt", "isotonic"])
def test_calibration_lowers_ece_and_nll_on_held_out(overconfident, method):
    (z_fit, y_fit), (z_test, y_test) = overconfident
    cal = fit_calibration(z_fit, y_fit, method)
    assert cal["method"] == method
    validate_calibration(cal)
    before, after = sigmoid(z_test), apply_calibration(z_test, cal)
    assert ece_score(y_test, before) > 0.08
    assert ece_score(y_test, after) < 0.03
    assert _nll(after, y_test) < _nll(before, y_test) - 0.1
    assert cal["nll_after"] < cal["nll_before"]


def test_temperature_recovers_scale(overconfident):
    (z, y), _ = overconfident
    cal = fit_temperature(z, y)
    assert cal["temperature"] == pytest.approx(4.0, rel=0.1)
    assert cal["nll_after"] == pytest.approx(_nll(sigmoid(z / cal["temperature"]), y), abs=1e-9)


def test_platt_recovers_slope_and_stays_finite_when_separable(overconfident):
    (z, y), _ = overconfident
    cal = fit_platt(z, y)
    assert cal["a"] == pytest.approx(0.25, abs=0.03)
    assert abs(cal["b"]) < 0.1
    sep_z = np.r_[-np.linspace(1, 3, 20), np.linspace(1, 3, 20)]  # 20 per class: the minimum
    sep = fit_platt(sep_z, np.r_[np.zeros(20), np.ones(20)])  # smoothed targets keep a finite
    assert np.isfinite(sep["a"]) and 0 < sep["a"] < 20


def test_isotonic_knots_compact_increasing(overconfident):
    (z, y), _ = overconfident
    cal = fit_isotonic(z, y)
    x, v = np.asarray(cal["x"]), np.asarray(cal["y"])
    assert 2 <= x.size <= 200 and x.shape == v.shape
    assert np.all(np.diff(x) > 0) and np.all(np.diff(v) >= 0)
    assert v.min() > 0 and v.max() < 1  # never certain
    small = fit_isotonic(z, y, max_knots=20)
    assert len(small["x"]) <= 20
    validate_calibration(small)
    assert small["nll_after"] < small["nll_before"]
    with pytest.raises(InputError, match="at least"):
        fit_isotonic(z[:10], y[:10])


def test_fit_none_and_unknown():
    cal = fit_calibration([0.0, 1.0], [0, 0], "none")  # one class is fine for "none"
    assert cal["method"] == "none" and cal["nll_before"] == cal["nll_after"]
    with pytest.raises(InputError, match="unknown calibration"):
        fit_calibration([0.0, 1.0], [0, 1], "beta")


@pytest.mark.parametrize(
    ("logits", "labels", "match"),
    [
        ([0.1, 0.2, 0.3], [0, 1], "length"),
        ([0.1, 0.2, 0.3], [1, 1, 1], "both real and fake"),
        ([0.1, np.nan, 0.3], [0, 1, 0], "NaN"),
        ([0.1, 0.2, 0.3], [0, 2, 1], "0 \\(real\\) or 1"),
        ([], [], "no logits"),
    ],
)
def test_bad_inputs_are_one_line_input_errors(logits, labels, match):
    for fit in (fit_temperature, fit_platt, fit_isotonic):
        with pytest.raises(InputError, match=match) as exc:
            fit(logits, labels)
        assert "\n" not in str(exc.value)


def test_string_labels_accepted():
    z, kw = [-2.0, -1.0, 1.0, 3.0, 0.5], {"min_per_class": 1}  # parsing only: below the minimum
    a = fit_temperature(z, ["real", "real", "fake", "fake", "real"], **kw)
    b = fit_temperature(z, [0, 0, 1, 1, 0], **kw)
    assert a["temperature"] == pytest.approx(b["temperature"])


# ---- thresholds


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(1)
    y = (rng.uniform(size=2000) < 0.4).astype(int)
    p = sigmoid(rng.normal(0, 1, y.size) + 1.5 * (2 * y - 1))
    p = np.round(p, 3)  # ties, as real scores have
    return p, y


def _fpr_tpr(p, y, t):
    pred = p >= t
    return pred[y == 0].mean(), pred[y == 1].mean()


@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.2])
def test_fpr_rule_is_smallest_threshold_meeting_target(scores, target):
    p, y = scores
    t, text = choose_threshold(p, y, f"fpr:{target}")
    fpr, tpr = _fpr_tpr(p, y, t)
    assert fpr <= target
    lower = p[p < t]
    if lower.size:  # the next observed probability below fails the target
        assert _fpr_tpr(p, y, lower.max())[0] > target
    assert f"FPR {fpr:.3f}" in text and f"TPR {tpr:.3f}" in text and "\n" not in text


def test_youden_and_f1_match_brute_force(scores):
    p, y = scores
    cand = np.unique(p)
    j = [np.subtract(*_fpr_tpr(p, y, t)[::-1]) for t in cand]
    t, text = choose_threshold(p, y, "youden")
    assert np.subtract(*_fpr_tpr(p, y, t)[::-1]) == pytest.approx(max(j))
    assert "Youden" in text

    def f1(t):
        pred = p >= t
        tp = np.sum(pred & (y == 1))
        return 2 * tp / (pred.sum() + y.sum())

    t, text = choose_threshold(p, y, "f1")
    assert f1(t) == pytest.approx(max(f1(c) for c in cand))
    assert "F1" in text


def test_fixed_and_bad_rules(scores):
    p, y = scores
    t, text = choose_threshold(p, y, "fixed:0.5")
    assert t == 0.5 and "fixed" in text
    assert choose_threshold([0.2, 0.7], [1, 1], "fixed:0.5")[0] == 0.5  # one class is fine
    for rule in ("fpr:abc", "fpr:1.5", "median", "fixed:"):
        with pytest.raises(InputError):
            choose_threshold(p, y, rule)
    with pytest.raises(InputError, match="both"):
        choose_threshold([0.2, 0.7], [0, 0], "youden")
    with pytest.raises(InputError, match="\\[0, 1\\]"):
        choose_threshold([0.2, 1.7], [0, 1], "youden")


def test_threshold_stays_in_unit_interval():
    t, _ = choose_threshold([0.1, 1.0, 1.0], [1, 0, 1], "fpr:0")
    assert t <= 1.0


def test_balanced_platt_weighs_few_fakes_like_many_reals():
    """``balanced``: the classes count alike (at the fit, the two classes' mean probabilities
    average to the targets' middle), so 10 fakes beside 300 reals are not squashed to the
    reals' side; unweighted, the few fakes' mean probability stays low."""
    from facetrust.detect.calibration import apply_calibration, fit_platt

    rng = np.random.default_rng(0)
    z = np.r_[rng.normal(-1, 1, 300), rng.normal(1, 1, 10)]
    y = np.r_[np.zeros(300), np.ones(10)].astype(int)
    t_pos, t_neg = 11 / 12, 1 / 302  # Platt's smoothed targets
    bal = apply_calibration(z, fit_platt(z, y, min_per_class=2, balanced=True))
    assert abs((bal[y == 1].mean() + bal[y == 0].mean()) / 2 - (t_pos + t_neg) / 2) < 1e-3
    plain = apply_calibration(z, fit_platt(z, y, min_per_class=2))
    assert plain[y == 1].mean() < 0.3 < bal[y == 1].mean()
