"""Guard rails for small data: calibration refuses too few examples per class and warns when
its probabilities collapse; the ECE carries its bin counts and says when it is not meaningful."""

import warnings

import numpy as np
import pytest

from facetrust.detect.calibration import (
    MIN_PER_CLASS,
    CalibrationWarning,
    check_calibration_counts,
    fit_calibration,
    sigmoid,
)
from facetrust.errors import InputError
from facetrust.train.metrics import binary_metrics, ece_summary, ece_text, evaluate


@pytest.mark.parametrize("method", ["temperature", "platt", "isotonic"])
def test_calibration_refuses_too_few_per_class(method):
    z = np.array([-2.0, -1.0, 1.5, 2.0, -0.5, 0.5, 1.0, -1.5])  # 4 real, 4 fake
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    with pytest.raises(InputError) as exc:
        fit_calibration(z, y, method)
    msg = str(exc.value)
    assert "\n" not in msg
    assert f"at least {MIN_PER_CLASS} real and {MIN_PER_CLASS} fake" in msg
    assert "4 real / 4 fake" in msg
    # "none" fits nothing, so it has no minimum
    assert fit_calibration(z, y, "none")["method"] == "none"


def test_minimum_is_per_class_not_in_total():
    y = np.r_[np.zeros(200), np.ones(5)]  # 205 rows, only 5 fakes
    with pytest.raises(InputError, match="200 real / 5 fake"):
        check_calibration_counts(y, "temperature")
    check_calibration_counts(np.r_[np.zeros(20), np.ones(20)], "temperature")  # at the minimum
    check_calibration_counts(y, "temperature", min_per_class=5)  # lowered knowingly


def test_collapse_warns_when_probabilities_squash_to_a_half():
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 2.0, 60)
    y = rng.integers(0, 2, 60)  # labels unrelated to the logits: T runs to its bound
    y[:2] = [0, 1]
    with pytest.warns(CalibrationWarning, match="collapsed") as rec:
        cal = fit_calibration(z, y, "temperature")
    assert "\n" not in str(rec[0].message)
    p = sigmoid(z / cal["temperature"])
    assert cal["prob_std"] == pytest.approx(p.std()) and cal["prob_std"] < 0.02


def test_no_warning_for_a_useful_calibration():
    rng = np.random.default_rng(1)
    true = rng.normal(0.0, 1.5, 400)
    y = (rng.uniform(size=true.size) < sigmoid(true)).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        cal = fit_calibration(3.0 * true, y, "temperature")
    assert cal["prob_std"] > 0.1


def test_ece_on_eight_squashed_rows_is_flagged_with_its_bins():
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    p = np.array([0.49, 0.5, 0.5, 0.51, 0.46, 0.5, 0.53, 0.52])
    m = binary_metrics(y, p, 0.5)
    assert sum(m["ece_bins"]) == 8 and len(m["ece_bins"]) == 15
    assert m["ece_bins_used"] == 2
    assert m["ece_note"] == "not meaningful: 8 faces, 2 bins used"
    assert ece_text(m) == f"ECE {m['ece']:.3f} (not meaningful: 8 faces, 2 bins used)"


def test_ece_meaningful_on_a_spread_set_and_flagged_when_crowded():
    rng = np.random.default_rng(2)
    p = rng.uniform(0, 1, 500)
    y = (rng.uniform(size=p.size) < p).astype(int)
    s = ece_summary(y, p)
    assert s["ece_note"] is None and s["ece_bins_used"] == 15
    assert ece_text(s) == f"ECE {s['ece']:.3f}"
    # a confident model (reals near 0, fakes near 1) fills two bins far apart: still meaningful
    conf = np.where(y == 1, 0.97, 0.02)
    assert ece_summary(y, conf)["ece_note"] is None
    # many rows, all squashed into two adjacent bins around 0.5: not meaningful
    squashed = 0.52 + rng.uniform(-0.04, 0.04, p.size)  # bins 7 and 8 of 15
    assert ece_summary(y, squashed)["ece_note"] == "not meaningful: 500 faces, 2 bins used"


def test_evaluate_names_the_level_in_the_note():
    rows = [{"path": f"v{i // 4}.mp4", "frame": i, "label": i % 2, "video_id": f"v{i // 4}"}
            for i in range(8)]  # fmt: skip
    rep = evaluate(rows, np.full(8, 0.5), 0.5)
    assert rep["face"]["ece_note"] == "not meaningful: 8 faces, 1 bin used"
    assert rep["video"]["ece_note"].startswith("not meaningful: 2 videos")


def test_training_config_default_minimum_is_the_library_minimum():
    from facetrust.train.config import CalibConfig

    assert CalibConfig().min_per_class == MIN_PER_CLASS == 20
