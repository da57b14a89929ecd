import json

import numpy as np
import pytest
from sklearn import metrics as skm

from facetrust.data.manifest import ManifestRow
from facetrust.errors import InputError
from facetrust.train.metrics import (
    aggregate,
    auc_interval,
    binary_metrics,
    ece_score,
    eer,
    evaluate,
    reliability_table,
)


@pytest.fixture(scope="module")
def fixed():
    rng = np.random.default_rng(3)
    y = (rng.uniform(size=500) < 0.35).astype(int)
    p = np.clip(rng.beta(2, 4, y.size) + 0.3 * y, 0, 1).round(2)  # ties included
    return y, p


@pytest.mark.parametrize("thr", [0.3, 0.5])
def test_binary_metrics_match_sklearn(fixed, thr):
    y, p = fixed
    m = binary_metrics(y, p, thr)
    pred = (p >= thr).astype(int)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["ap"] == pytest.approx(skm.average_precision_score(y, p))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    assert m["nll"] == pytest.approx(skm.log_loss(y, p), rel=1e-6)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert m["confusion"] == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    assert m["tnr"] == pytest.approx(tn / (tn + fp)) and m["fpr"] == pytest.approx(fp / (tn + fp))
    assert (m["n"], m["n_fake"], m["n_real"]) == (500, y.sum(), 500 - y.sum())
    json.dumps(m, allow_nan=False)


def test_eer_matches_brute_force(fixed):
    y, p = fixed
    best = None
    for t in sorted(set(p.tolist())):
        fpr = sum(1 for pi, yi in zip(p, y, strict=True) if yi == 0 and pi >= t) / (y == 0).sum()
        fnr = sum(1 for pi, yi in zip(p, y, strict=True) if yi == 1 and pi < t) / (y == 1).sum()
        if best is None or abs(fpr - fnr) < best[0]:
            best = (abs(fpr - fnr), (fpr + fnr) / 2, t)
    e, t = eer(y, p)
    assert e == pytest.approx(best[1]) and t == pytest.approx(best[2])
    assert eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])[0] == 0.0  # separable
    assert eer([0, 1, 0, 1], [0.1, 0.2, 0.8, 0.9])[0] == pytest.approx(0.5)
    m = binary_metrics(y, p)
    assert (m["eer"], m["eer_threshold"]) == (e, t)


def test_one_class_gives_none_not_nan():
    m = binary_metrics([1, 1, 1], [0.9, 0.2, 0.7], 0.5)
    assert m["auc"] is None and m["ap"] is None and m["eer"] is None
    assert m["recall"] == pytest.approx(2 / 3) and m["tnr"] is None and m["fpr"] is None
    assert m["accuracy"] == pytest.approx(2 / 3) and m["mean_prob"] == pytest.approx(0.6)
    r = binary_metrics([0, 0], [0.1, 0.2], 0.5)
    assert r["tnr"] == 1.0 and r["recall"] is None and r["precision"] is None
    assert r["f1"] is None
    json.dumps([m, r], allow_nan=False)
    with pytest.raises(InputError):
        eer([1, 1], [0.3, 0.4])


def test_ece_small_when_calibrated_large_when_overconfident():
    rng = np.random.default_rng(0)
    q = rng.uniform(size=30000)
    y = (rng.uniform(size=q.size) < q).astype(int)
    assert ece_score(y, q) < 0.02
    logit = np.log(q / (1 - q))
    over = 1 / (1 + np.exp(-4 * logit))
    assert ece_score(y, over) > 0.1


def test_ece_by_hand():
    y = [0, 1, 1, 0]
    p = [0.05, 0.1, 0.95, 1.0]  # bins of width 0.5: {0.05, 0.1} and {0.95, 1.0}
    # bin 1: frac 0.5, mean 0.075; bin 2: frac 0.5, mean 0.975
    assert ece_score(y, p, bins=2) == pytest.approx(0.5 * 0.425 + 0.5 * 0.475)
    t = reliability_table(y, p, bins=2)
    assert t["count"].tolist() == [2, 2]


@pytest.mark.parametrize(
    ("labels", "probs"),
    [
        ([0, 1], [0.5]),
        ([0, 1], [0.5, np.nan]),
        ([0, 1], [0.5, 1.2]),
        ([0, 3], [0.1, 0.2]),
        ([], []),
    ],
)
def test_bad_inputs(labels, probs):
    with pytest.raises(InputError):
        binary_metrics(labels, probs)


# ---- aggregation


def _rows():
    """Video v1 (2 frames x 2 faces), an image with 2 faces, a single-face image, a real video."""
    R = ManifestRow
    return [
        R(path="v1.mp4", label="fake", source="a", kind="swap", video_id="v1", frame=0, face=0),
        R(path="v1.mp4", label="fake", source="a", kind="swap", video_id="v1", frame=0, face=1),
        R(path="v1.mp4", label="fake", source="a", kind="swap", video_id="v1", frame=5, face=0),
        R(path="v1.mp4", label="fake", source="a", kind="swap", video_id="v1", frame=5, face=1),
        R(path="img1.jpg", label="real", source="b", face=0),
        R(path="img1.jpg", label="real", source="b", face=1),
        {"path": "img2.png", "label": "fake", "source": "b", "kind": "gan"},
        R(path="v2.mp4", label="real", source="a", video_id="v2", frame=0),
        R(path="v2.mp4", label="real", source="a", video_id="v2", frame=3),
    ]


PROBS = np.array([0.2, 0.6, 0.9, 0.1, 0.3, 0.4, 0.8, 0.1, 0.5])


def test_face_level_is_identity():
    y, p, keys = aggregate(_rows(), PROBS, "face")
    assert y.tolist() == [1, 1, 1, 1, 0, 0, 1, 0, 0] and p.tolist() == PROBS.tolist()
    assert len(set(keys)) == 9


def test_frame_level_max_over_faces():
    y, p, keys = aggregate(_rows(), PROBS, "frame")
    assert keys == ["v1.mp4@0", "v1.mp4@5", "img1.jpg", "img2.png", "v2.mp4@0", "v2.mp4@3"]
    assert p.tolist() == pytest.approx([0.6, 0.9, 0.4, 0.8, 0.1, 0.5])
    assert y.tolist() == [1, 1, 0, 1, 0, 0]


def test_video_level_mean_over_frames():
    y, p, keys = aggregate(_rows(), PROBS, "video")
    assert keys == ["a/v1", "b/img1.jpg", "b/img2.png", "a/v2"]
    assert p.tolist() == pytest.approx([0.75, 0.4, 0.8, 0.3])
    assert y.tolist() == [1, 0, 1, 0]


def test_evaluate_levels_and_groups():
    rows = _rows()
    ev = evaluate(rows, PROBS, 0.5)
    assert ev["face"]["n"] == 9 and ev["frame"]["n"] == 6 and ev["video"]["n"] == 4
    assert ev["video"]["auc"] == pytest.approx(1.0)
    assert set(ev["per_source"]) == {"a", "b"}
    assert ev["per_source"]["a"]["video"]["n"] == 2
    assert set(ev["per_kind"]) == {"swap", "gan", "real"}
    swap = ev["per_kind"]["swap"]["face"]  # one class: recall and mean prob, no AUC
    assert swap["auc"] is None and swap["recall"] == pytest.approx(0.5)
    assert swap["mean_prob"] == pytest.approx(0.45)
    real = ev["per_kind"]["real"]["frame"]
    assert real["auc"] is None and real["tnr"] == pytest.approx(2 / 3)
    json.dumps(ev, allow_nan=False)
    with pytest.raises(InputError, match="length"):
        evaluate(rows, PROBS[:-1], 0.5)
    with pytest.raises(InputError, match="level"):
        aggregate(rows, PROBS, "scene")


# ---- the AUC's bootstrap interval


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_auc_interval_brackets_the_auc_and_is_seeded(fixed):
    y, p = fixed  # ties included
    lo, hi = auc_interval(y, p)
    auc = skm.roc_auc_score(y, p)
    assert lo < auc < hi and hi - lo < 0.2
    assert auc_interval(y, p) == [lo, hi]  # seeded: the same inputs, the same interval
    assert auc_interval(y, p, seed=1) != [lo, hi]
    # the resamples' median is the AUC (the weighted count of pairs handles ties as roc_auc)
    mid = auc_interval(y, p, level=0.02)
    assert mid[0] == pytest.approx(auc, abs=0.003) and mid[1] == pytest.approx(auc, abs=0.003)


def test_auc_interval_narrows_with_more_data():
    rng = np.random.default_rng(0)

    def width(n):
        y = np.r_[np.zeros(n), np.ones(n)]
        p = _sigmoid(np.r_[rng.normal(0, 1, n), rng.normal(1, 1, n)])
        lo, hi = auc_interval(y, p)
        return hi - lo

    assert width(2000) < 0.5 * width(100)


def test_auc_interval_resamples_whole_videos():
    # 20 videos of 50 near-identical frames: 20 pieces of evidence, not 1,000
    rng = np.random.default_rng(1)
    video_label = np.r_[np.zeros(10), np.ones(10)]
    video_score = _sigmoid(rng.normal(0, 1, 20) + 0.8 * video_label)
    y = np.repeat(video_label, 50)
    p = np.clip(np.repeat(video_score, 50) + rng.normal(0, 0.002, 1000), 0, 1)
    videos = np.repeat(np.arange(20), 50)
    lo_f, hi_f = auc_interval(y, p)  # every frame its own draw: far too sure
    lo_v, hi_v = auc_interval(y, p, clusters=videos)
    assert hi_v - lo_v > 3 * (hi_f - lo_f)
    # the same width as bootstrapping the 20 videos' scores themselves
    lo_1, hi_1 = auc_interval(video_label, video_score)
    assert abs((hi_v - lo_v) - (hi_1 - lo_1)) < 0.1


@pytest.mark.parametrize(
    "labels, clusters",
    [([0, 0, 0, 1], None), ([0, 1, 0, 1], ["a", "b", "a", "b"]), ([1, 1, 1, 1], None)],
)
def test_auc_interval_none_without_two_clusters_per_class(labels, clusters):
    assert auc_interval(labels, [0.1, 0.9, 0.2, 0.8], clusters) is None


def test_auc_interval_bad_arguments():
    with pytest.raises(InputError, match="length"):
        auc_interval([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], clusters=["a", "b"])
    with pytest.raises(InputError, match="level"):
        auc_interval([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], level=1.5)
    with pytest.raises(InputError, match="resamples"):
        auc_interval([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], resamples=0)


def test_evaluate_gives_each_level_an_interval_over_videos():
    rng = np.random.default_rng(2)
    rows, probs = [], []
    for v in range(40):  # 40 videos of 10 frames; half fake, scores shifted per video
        fake = v % 2
        shift = rng.normal(0, 1) + fake
        for f in range(10):
            rows.append(
                ManifestRow(
                    path=f"v{v}.mp4",
                    label="fake" if fake else "real",
                    source="s",
                    video_id=f"v{v}",
                    frame=f,
                )
            )
            probs.append(_sigmoid(shift + rng.normal(0, 0.05)))
    ev = evaluate(rows, np.array(probs), 0.5)
    for lv in ("face", "frame", "video"):
        lo, hi = ev[lv]["auc_ci"]
        assert lo <= ev[lv]["auc"] <= hi
    face_w = ev["face"]["auc_ci"][1] - ev["face"]["auc_ci"][0]
    video_w = ev["video"]["auc_ci"][1] - ev["video"]["auc_ci"][0]
    assert face_w > 0.5 * video_w  # faces of one video were not counted as independent
    assert ev["per_source"]["s"]["face"]["auc_ci"] == ev["face"]["auc_ci"]
    json.dumps(ev, allow_nan=False)
