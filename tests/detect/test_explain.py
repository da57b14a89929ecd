import io

import numpy as np
import pytest
from PIL import Image

from facetrust.detect import Detector
from facetrust.detect.explain import Explainer
from facetrust.errors import InputError, MediaError


def _checkpoint(tmp_path, arch: str, input_size: int = 64):
    """A randomly initialised checkpoint of ``arch`` (weights do not matter for the shapes)."""
    import torch

    from facetrust.models import CheckpointMeta, create_model, save_checkpoint

    torch.manual_seed(0)
    model = create_model(arch).eval()
    meta = CheckpointMeta.for_model(model, input_size=input_size, name=f"rand-{arch}")
    return save_checkpoint(tmp_path / f"{arch}.safetensors", model, meta)


def _hooks(module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in module.modules())


@pytest.fixture(scope="module")
def detector(tiny_checkpoint):
    return Detector(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def explainer(detector):
    return Explainer(detector)


def test_heatmap_per_face_and_composited(explainer, detector, astronaut):
    ex = explainer(astronaut)
    assert "blocks.3" in repr(explainer)
    assert ex.method == "gradcam" and ex.layer == "blocks.3"
    # the prediction is exactly the detector's result
    expected = detector(astronaut).as_json()
    got = dict(ex.prediction)
    got.pop("processing_time_s"), expected.pop("processing_time_s")
    assert got == expected
    assert len(ex.faces) == 1
    face = ex.faces[0]
    s = detector.aligner.size
    assert face.heatmap.shape == (s, s) and face.crop.shape == (s, s, 3)
    assert face.heatmap.dtype == np.float32
    assert face.heatmap.min() >= 0.0 and face.heatmap.max() <= 1.0
    # the composite lives on the face: covered inside the box, zero far from it
    h, w = astronaut.shape[:2]
    assert ex.heatmap.shape == (h, w) == ex.coverage.shape
    x1, y1, x2, y2 = (int(v) for v in face.box)
    assert ex.coverage[y1:y2, x1:x2].min() > 0.99
    assert ex.heatmap[h - 40 :, :].max() == 0 and ex.coverage[h - 40 :, :].max() == 0
    if face.heatmap.max() > 0:
        px, py = face.peak
        assert 0 <= px < w and 0 <= py < h
    else:  # Grad-CAM keeps positive evidence only: a clearly real face may show none
        assert face.peak is None
    # overlay changes face pixels only
    overlay = ex.overlay()
    assert overlay.shape == astronaut.shape and overlay.dtype == np.uint8
    assert np.array_equal(overlay[h - 40 :], astronaut[h - 40 :])
    assert not np.array_equal(overlay[y1:y2, x1:x2], astronaut[y1:y2, x1:x2])
    png = Image.open(io.BytesIO(ex.overlay_png(max_side=256)))
    assert png.format == "PNG" and png.size == (256, 256)
    d = ex.to_dict()
    assert d["faces"][0]["label"] == face.label and d["prediction"]["kind"] == "image"


def test_hooks_are_removed_and_detector_untouched(explainer, detector, astronaut):
    explainer(astronaut)
    assert _hooks(explainer.model) == 0
    assert _hooks(detector.model) == 0
    assert explainer.model is not detector.model


def test_heatmap_follows_the_fake_evidence(explainer, astronaut):
    """The tiny model learnt "noise = fake": noise on the right of a face lights up the right."""
    rng = np.random.default_rng(0)
    image = astronaut.copy()
    face = explainer.detector.faces(image)[0]
    x1, y1, x2, y2 = (int(v) for v in face.box)
    xm = (x1 + x2) // 2
    noise = rng.normal(0, 60, (y2 - y1, x2 - xm, 3))
    image[y1:y2, xm:x2] = np.clip(image[y1:y2, xm:x2] + noise, 0, 255).astype(np.uint8)
    ex = explainer(image)
    heat = ex.heatmap
    assert ex.faces[0].heatmap.max() > 0
    assert heat[y1:y2, xm:x2].mean() > 2 * heat[y1:y2, x1:xm].mean()
    assert xm <= ex.faces[0].peak[0] <= x2 + 10


def test_gradcam_plus_plus_on_tiny_att_group(tmp_path, group_photo):
    image, _ = group_photo
    ex = Explainer(_checkpoint(tmp_path, "tiny_att", 48), method="gradcam++", device="cpu")(image)
    assert ex.method == "gradcam++"
    assert len(ex.faces) == 4 == len(ex.prediction["faces"])
    for f, r in zip(ex.faces, ex.prediction["faces"], strict=True):
        assert f.heatmap.shape == f.crop.shape[:2] == (256, 256)  # the crop contract's side
        assert f.fake_probability == pytest.approx(r["fake_probability"], abs=5e-5)
        x1, y1, x2, y2 = (int(v) for v in f.box)
        assert ex.coverage[(y1 + y2) // 2, (x1 + x2) // 2] > 0.99


def test_no_face_gives_empty_heatmap(explainer):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    ex = explainer(image)
    assert ex.faces == [] and ex.prediction["label"] == "no_face"
    assert ex.heatmap.max() == 0 and np.array_equal(ex.overlay(), image)


def test_bad_inputs(explainer, detector, face_video):
    with pytest.raises(MediaError, match="video"):
        explainer(face_video.read_bytes())
    with pytest.raises(MediaError, match="video"):
        explainer(face_video)
    with pytest.raises(MediaError):
        explainer(b"definitely not an image")
    with pytest.raises(InputError, match="method"):
        Explainer(detector, method="lime")  # type: ignore[arg-type]


@pytest.mark.parametrize("arch", ["efficientnet_lite0", "legacy_xception", "mobilenetv2_100"])
def test_cam_layer_of_every_backbone_gives_a_heatmap(tmp_path, arch):
    ex = Explainer(_checkpoint(tmp_path, arch, 64), device="cpu")
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    heat = ex.heatmaps(crops)
    assert heat.shape == (2, 64, 64)
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    assert _hooks(ex.model) == 0


def test_cli_explain(tiny_checkpoint, tmp_path, face_video):
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from facetrust.cli import app

    example = Path(__file__).resolve().parents[2] / "examples" / "astronaut.jpg"
    runner = CliRunner()
    out = tmp_path / "heat.png"
    args = ["explain", str(example), "-o", str(out), "--model", str(tiny_checkpoint)]
    res = runner.invoke(app, [*args, "--json", "--method", "gradcam++"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["method"] == "gradcam++" and d["output"] == str(out)
    assert d["prediction"]["kind"] == "image" and len(d["faces"]) == 1
    assert Image.open(out).size == (512, 512)
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "heatmap written to" in res.stdout

    bad_method = runner.invoke(app, [*args, "--method", "lime"])
    assert bad_method.exit_code == 2 and "unknown method" in bad_method.output
    missing = runner.invoke(app, ["explain", str(tmp_path / "nope.jpg"), "-o", str(out)])
    assert missing.exit_code == 2 and "not a file" in missing.output
    video = runner.invoke(
        app, ["explain", str(face_video), "-o", str(out), "--model", str(tiny_checkpoint)]
    )
    assert video.exit_code == 1 and "video" in video.output


def test_max_side_composites_at_a_lower_resolution(detector, astronaut):
    full = Explainer(detector)(astronaut)
    small = Explainer(detector, max_side=128)(astronaut)
    assert small.scale == 0.25 and small.image.shape == (128, 128, 3)
    assert small.heatmap.shape == (128, 128) and small.overlay().shape == (128, 128, 3)
    assert small.faces[0].box == full.faces[0].box  # boxes stay in original pixels
    assert small.prediction["width"] == 512
    x1, y1, x2, y2 = (int(v / 4) for v in full.faces[0].box)
    assert small.coverage[y1:y2, x1:x2].min() > 0.99
