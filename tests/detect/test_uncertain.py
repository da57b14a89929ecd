"""The ``uncertain`` band around the threshold, and the ``limits`` line, from checkpoint to
result."""

import pytest
import torch
from safetensors.torch import load_file

from facetrust.detect import Detector
from facetrust.detect.pipeline import label_for, model_limits
from facetrust.errors import InputError
from facetrust.models import CheckpointMeta, create_model, read_checkpoint_meta, save_checkpoint
from facetrust.models.zoo import shipped_models


def _meta(**fields) -> CheckpointMeta:
    base = dict(arch="tiny_cnn", input_size=32, mean=(0, 0, 0), std=(1, 1, 1))
    return CheckpointMeta(**{**base, **fields})


def test_interval_default_and_stored_band():
    assert _meta(threshold=0.68).uncertain_interval() == pytest.approx((0.58, 0.78))
    assert _meta(threshold=0.5, uncertain_band=0.2).uncertain_interval() == pytest.approx(
        (0.3, 0.7)
    )
    # never more than half the way to 0 or 1: both labels stay reachable
    low, high = _meta(threshold=0.903).uncertain_interval()
    assert low == pytest.approx(0.803) and high == pytest.approx(0.9515) and high < 1
    assert _meta(threshold=0.04).uncertain_interval()[0] == pytest.approx(0.02)
    assert _meta(threshold=0.5, uncertain_band=0.0).uncertain_interval() == (0.5, 0.5)


def test_label_for():
    band = (0.4, 0.6)
    assert label_for(None, 0.5, band) == "no_face"
    assert label_for(0.39, 0.5, band) == "real"
    assert label_for(0.4, 0.5, band) == "uncertain"
    assert label_for(0.59, 0.5, band) == "uncertain"
    assert label_for(0.6, 0.5, band) == "fake"
    assert label_for(0.5, 0.5, (0.5, 0.5)) == "fake"  # band off


def test_detector_labels_uncertain_near_its_threshold(tiny_checkpoint, astronaut):
    p = Detector(tiny_checkpoint, device="cpu")(astronaut).fake_probability
    near = Detector(tiny_checkpoint, device="cpu", threshold=p)(astronaut)
    assert near.label == "uncertain" and near.faces[0].label == "uncertain"
    assert near.uncertain_band == pytest.approx((p - 0.1, p + 0.1), abs=1e-6)
    d = near.as_json()
    assert d["label"] == "uncertain" and len(d["uncertain_band"]) == 2
    off = Detector(tiny_checkpoint, device="cpu", threshold=p, uncertain_band=0.0)(astronaut)
    assert off.label == "fake" and off.uncertain_band is None
    with pytest.raises(InputError):
        Detector(tiny_checkpoint, device="cpu", uncertain_band=0.7)


def test_band_stored_in_the_checkpoint_is_used(tmp_path, astronaut, tiny_checkpoint):
    meta = read_checkpoint_meta(tiny_checkpoint)
    model = create_model("tiny_cnn")
    model.load_state_dict(load_file(str(tiny_checkpoint)))
    p = Detector(tiny_checkpoint, device="cpu")(astronaut).fake_probability
    # threshold 0.3 above p, band 0.35: uncertain only because of the stored band
    t = min(p + 0.3, 0.999)
    wide = meta.model_copy(
        update={"threshold": t, "uncertain_band": 0.35, "limits": "never saw a diffusion face"}
    )
    path = save_checkpoint(tmp_path / "wide.safetensors", model, wide)
    r = Detector(path, device="cpu")(astronaut)
    assert r.label == "uncertain" and r.limits == "never saw a diffusion face"
    narrow = Detector(path, device="cpu", uncertain_band=0.1)(astronaut)
    assert narrow.label == "real"
    torch.testing.assert_close(torch.tensor(narrow.fake_probability), torch.tensor(p))


def test_per_call_threshold_relabels_everything(tiny_checkpoint, face_video):
    det = Detector(tiny_checkpoint, device="cpu", frames=4)
    base = det(face_video)
    p = base.fake_probability
    r = det(face_video, threshold=p, frames=6)
    assert r.frames_analyzed == 6 and r.threshold == pytest.approx(p)
    assert r.label == "uncertain" and r.verdict.verdict == "uncertain"
    assert all(
        f.label == label_for(f.fake_probability, p, (p - 0.1, p + 0.1)) for f in r.frame_predictions
    )
    assert r.consistency == pytest.approx(
        sum(f.label == "uncertain" for f in r.frame_predictions) / len(r.frame_predictions)
    )
    assert det.threshold == 0.5  # the detector itself is unchanged
    with pytest.raises(InputError):
        det(face_video, threshold=1.5)


def test_limits_of_shipped_models_come_from_the_model_card():
    for name, path in shipped_models().items():
        line = model_limits(path, read_checkpoint_meta(path))
        assert line and line.startswith("trained only on"), name
        assert "near chance" in line


def test_limits_of_a_custom_model_name_its_training_sources(tmp_path):
    meta = _meta(training_data={"train": {"dfdc": {}, "yonsei": {}}})
    line = model_limits(tmp_path / "x.safetensors", meta)
    assert line is not None and "dfdc, yonsei" in line
    assert model_limits(tmp_path / "x.safetensors", _meta()) is None
