"""A threshold set from known-real images alone: the rate it calls fake, and the interval it
promises on more images like them."""

import numpy as np
import pytest

from facetrust.detect.calibration import FEW_REALS, choose_threshold, threshold_for_reals
from facetrust.errors import InputError


def test_the_threshold_calls_at_most_the_asked_share_fake():
    p = np.random.default_rng(0).beta(1, 8, 1000)
    t = threshold_for_reals(p, fpr=0.05)
    assert t["n"] == 1000 and not t["few"]
    assert t["called_fake"] == pytest.approx(0.05, abs=0.001)
    assert (p >= t["threshold"]).mean() == t["called_fake"]
    low, high = t["expected"]
    assert low < 0.05 < high and high - low < 0.04
    # the same rule as choose_threshold's fpr:X with these reals and any fakes
    fakes = np.full(10, 0.99)
    thr, _ = choose_threshold(np.r_[p, fakes], np.r_[np.zeros(1000), np.ones(10)], "fpr:0.05")
    assert t["threshold"] == pytest.approx(thr)


def test_the_promised_interval_holds_on_new_reals():
    rng = np.random.default_rng(1)
    inside = 0
    for _ in range(400):
        t = threshold_for_reals(rng.beta(2, 5, 200), fpr=0.05)
        new = rng.beta(2, 5, 20000)
        low, high = t["expected"]
        inside += low <= (new >= t["threshold"]).mean() <= high
    assert 0.90 <= inside / 400 <= 0.99  # a 95 % interval


def test_a_rate_below_one_file_in_n_sets_the_threshold_above_every_real():
    p = np.linspace(0.01, 0.4, 20)
    t = threshold_for_reals(p, fpr=0.01)
    assert t["threshold"] > p.max() and t["called_fake"] == 0 and t["few"]
    assert t["expected"][1] < 0.2  # Beta(1, 20): below 17 % with 97.5 % probability
    assert FEW_REALS > 20


@pytest.mark.parametrize(
    "probs, fpr, match",
    [
        ([], 0.05, "no probabilities"),
        ([0.1, 1.2], 0.05, r"\[0, 1\]"),
        ([0.1, float("nan")], 0.05, "NaN"),
        ([[0.1, 0.2]], 0.05, "one-dimensional"),
        (["a"], 0.05, "numbers"),
        ([0.1, 0.2], 0.0, r"\(0, 1\)"),
        ([0.1, 0.2], 1.5, r"\(0, 1\)"),
    ],
)
def test_bad_input_is_refused_in_one_line(probs, fpr, match):
    with pytest.raises(InputError, match=match):
        threshold_for_reals(probs, fpr)
