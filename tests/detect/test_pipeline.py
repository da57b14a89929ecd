import json

import numpy as np
import pytest
from PIL import Image

from facetrust.detect import Detector
from facetrust.detect.calibration import apply_calibration, validate_calibration
from facetrust.detect.tracks import link_tracks
from facetrust.errors import InputError, MediaError, ModelError, NoModelError


@pytest.fixture(scope="module")
def detector(tiny_checkpoint):
    return Detector(tiny_checkpoint, device="cpu")


def test_image_result_fields(detector, astronaut):
    r = detector(astronaut, path="astronaut")
    d = r.as_json()
    assert d["kind"] == "image" and d["path"] == "astronaut"
    assert len(d["faces"]) == 1
    face = d["faces"][0]
    assert set(face) >= {"box", "det_score", "fake_probability", "label"}
    assert 0.0 <= face["fake_probability"] <= 1.0
    assert face["label"] in {"real", "fake"}
    assert d["fake_probability"] == face["fake_probability"]  # max over the one face
    assert d["model"] == "tiny-test" and d["threshold"] == 0.5
    json.dumps(d)


def test_file_verdict_is_max_over_faces(detector, group_photo):
    r = detector(group_photo[0])
    assert len(r.faces) == 4
    assert r.fake_probability == pytest.approx(max(f.fake_probability for f in r.faces))
    assert "max" in r.rule


def test_threshold_override_changes_labels(tiny_checkpoint, astronaut):
    low = Detector(tiny_checkpoint, threshold=0.0)(astronaut)
    high = Detector(tiny_checkpoint, threshold=1.0)(astronaut)
    assert low.label == "fake" and high.label == "real"
    assert low.fake_probability == pytest.approx(high.fake_probability)


def test_no_face_is_explicit(detector):
    rng = np.random.default_rng(0)
    r = detector(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8))
    assert r.label == "no_face" and r.fake_probability is None and r.faces == []


def test_calibration_from_checkpoint_is_used(detector, astronaut):
    face = detector.faces(astronaut)[0]
    crop = detector.aligner(astronaut, face)
    import torch

    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        logit = float(detector.model(x)[0, 0])
    expected = 1 / (1 + np.exp(-logit / 1.5))  # temperature 1.5 in the fixture
    assert detector.score_crops([crop])[0] == pytest.approx(expected, abs=1e-5)


def test_paths_bytes_and_rotation(detector, tmp_path, astronaut):
    p = tmp_path / "a.png"
    Image.fromarray(astronaut).save(p)
    by_path = detector(p)
    by_bytes = detector(p.read_bytes())
    assert by_path.path == str(p)
    assert by_path.fake_probability == pytest.approx(by_bytes.fake_probability)
    # EXIF orientation 8 (rotate 90 CW on display): stored sideways, the face is still found
    sideways = Image.fromarray(np.rot90(astronaut, k=-1).copy())
    exif = Image.Exif()
    exif[0x0112] = 8
    q = tmp_path / "rot.jpg"
    sideways.save(q, exif=exif.tobytes(), quality=95)
    r = detector(q)
    assert len(r.faces) == 1 and r.width == 512


def test_bad_inputs(detector, tmp_path):
    (tmp_path / "text.jpg").write_text("hello, not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(MediaError):
        detector(tmp_path / "text.jpg")
    with pytest.raises(MediaError):
        detector(tmp_path / "empty.png")
    with pytest.raises(MediaError):
        detector(tmp_path / "missing.jpg")
    with pytest.raises(InputError):
        detector(tmp_path)
    with pytest.raises(InputError):
        detector(12345)


def test_video_result(detector, face_video):
    r = detector(face_video)
    d = r.as_json()
    assert d["kind"] == "video"
    assert d["frames_analyzed"] == 16
    assert len(d["frame_predictions"]) == 16
    assert all(f["num_faces"] == 1 for f in d["frame_predictions"])
    # one face drifting: one track through all frames
    assert len(d["faces"]) == 1 and len(d["faces"][0]["frames"]) == 16
    assert 0.0 <= d["consistency"] <= 1.0
    assert d["fake_probability"] == pytest.approx(
        np.mean([f["fake_probability"] for f in d["frame_predictions"]]), abs=1e-3
    )


def test_video_without_faces(detector, noface_video):
    r = detector(noface_video)
    assert r.kind == "video" and r.label == "no_face" and r.fake_probability is None
    assert r.frames_analyzed == 12 and r.consistency is None


def test_unreadable_video(detector, tmp_path, face_video):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(face_video.read_bytes()[:600])
    with pytest.raises(MediaError):
        detector(broken)


def test_fps_sampling(tiny_checkpoint, face_video):
    r = Detector(tiny_checkpoint, fps=2.0)(face_video)  # 20 frames at 10 fps = 2 s
    assert r.frames_analyzed == 4


def test_no_model_installed_is_an_error(monkeypatch):
    from facetrust.models import zoo

    monkeypatch.setattr(zoo, "shipped_models", lambda: {})
    with pytest.raises(NoModelError, match="no trained model"):
        Detector()


def test_model_that_is_not_a_checkpoint(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(b"garbage")
    with pytest.raises(ModelError):
        Detector(p)
    with pytest.raises(ModelError):
        Detector(tmp_path / "nope.safetensors")


def test_calibration_methods():
    logits = np.array([-2.0, 0.0, 2.0])
    none = apply_calibration(logits, {"method": "none"})
    assert none[1] == pytest.approx(0.5)
    t = apply_calibration(logits, {"method": "temperature", "temperature": 2.0})
    assert t[2] == pytest.approx(1 / (1 + np.exp(-1)))
    iso = apply_calibration(logits, {"method": "isotonic", "x": [0, 0.5, 1], "y": [0, 0.2, 1]})
    assert iso[1] == pytest.approx(0.2)
    with pytest.raises(ModelError):
        validate_calibration({"method": "magic"})
    with pytest.raises(ModelError):
        validate_calibration({"method": "temperature", "temperature": 0})


def test_link_tracks_two_people():
    a = [(0, 0, 10, 10), (100, 0, 110, 10)]
    b = [(102, 1, 112, 11), (2, 1, 12, 11)]
    tracks = link_tracks([a, b, [], a])
    assert len(tracks) == 2
    assert sorted(len(t.members) for t in tracks) == [3, 3]


def test_a_custom_model_never_reports_itself_as_a_shipped_one(tiny_checkpoint, tmp_path, astronaut):
    import hashlib

    from facetrust.models import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(tiny_checkpoint)
    mine = save_checkpoint(
        tmp_path / "my-run.safetensors",
        model,
        meta.model_copy(update={"name": "facetrust-default"}),
    )
    r = Detector(mine, device="cpu")(astronaut)
    assert r.model == "my-run"  # the file's own name, not the shipped model's
    assert r.model_sha256 == hashlib.sha256(mine.read_bytes()).hexdigest()[:12]
    assert Detector(tiny_checkpoint, device="cpu")(astronaut).model == "tiny-test"


def test_a_detectors_own_settings_bound_its_work(tiny_checkpoint):
    from facetrust.config import Settings
    from facetrust.errors import MediaError

    det = Detector(tiny_checkpoint, device="cpu", settings=Settings(max_aspect_ratio=2.0))
    thin = np.full((40, 160, 3), 128, np.uint8)
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(thin).save(buf, format="PNG")
    with pytest.raises(MediaError, match="too thin"):
        det(buf.getvalue())
    assert Detector(tiny_checkpoint, device="cpu")(buf.getvalue()).label == "no_face"


def test_find_gives_the_faces_detection_scores_unscored(
    detector, astronaut, group_photo, tmp_path, face_video
):
    """``Detector.find``: one list of faces (crops cut by the contract) per image or sampled
    frame, the same faces ``detect`` scores; bad input fails as detect's does."""
    from facetrust.errors import MediaError

    [faces] = detector.find(group_photo[0])
    assert len(faces) == len(detector(group_photo[0]).faces) == 4
    size = detector.contract.size
    assert all(f.crop is not None and f.crop.shape == (size, size, 3) for f in faces)
    p = tmp_path / "a.png"
    Image.fromarray(astronaut).save(p)
    for source in (p, p.read_bytes()):
        [one] = detector.find(source)
        np.testing.assert_array_equal(one[0].crop, detector.find(astronaut)[0][0].crop)
    per_frame = detector.find(face_video, frames=5)
    assert len(per_frame) == 5 and all(len(fs) == 1 for fs in per_frame)
    assert detector.find(np.full((120, 160, 3), 90, np.uint8)) == [[]]
    with pytest.raises(MediaError, match="not found"):
        detector.find(tmp_path / "nope.jpg")
