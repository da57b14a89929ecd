import io

import cv2
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
    # the last layer and the finer stages before it (tiny_cnn at 32 px: 2x2, 4x4, 8x8)
    assert ex.method == "gradcam" and ex.layers == ("blocks.3", "blocks.2", "blocks.1")
    # the prediction is exactly the detector's result
    expected = detector(astronaut).as_json()
    got = dict(ex.prediction)
    got.pop("processing_time_s"), expected.pop("processing_time_s")
    assert got == expected
    assert len(ex.faces) == 1
    face = ex.faces[0]
    s = detector.aligner.size
    assert face.heatmap.shape == (s, s) == face.mask.shape and face.crop.shape == (s, s, 3)
    assert face.heatmap.dtype == np.float32
    assert face.heatmap.min() >= 0.0 and face.heatmap.max() <= 1.0
    # the composite lives on the face: a soft ellipse, covered at its centre, zero at the
    # corners of the (rotated) crop square and far from it: no hard-edged rectangle
    h, w = astronaut.shape[:2]
    assert ex.heatmap.shape == (h, w) == ex.coverage.shape == ex.opacity.shape
    x1, y1, x2, y2 = (int(v) for v in face.box)
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    assert ex.coverage[cy, cx] > 0.99
    inv = cv2.invertAffineTransform(face.matrix)
    for corner in [(1, 1), (s - 2, 1), (1, s - 2), (s - 2, s - 2)]:
        x, y = (int(round(v)) for v in inv @ np.array([*corner, 1.0]))
        if 0 <= x < w and 0 <= y < h:
            assert ex.coverage[y, x] == 0
    soft = ((ex.coverage > 0.05) & (ex.coverage < 0.95)).sum()
    assert soft > 0.1 * (ex.coverage >= 0.95).sum()  # a feathered edge, not a step
    assert ex.heatmap[h - 40 :, :].max() == 0 and ex.coverage[h - 40 :, :].max() == 0
    if face.heatmap.max() > 0:
        px, py = face.peak
        assert 0 <= px < w and 0 <= py < h
    else:  # Grad-CAM keeps positive evidence only: a clearly real face may show none
        assert face.peak is None
    # opacity follows the verdict: never above alpha x p(fake)
    assert ex.opacity.max() <= ex.alpha * face.fake_probability + 1e-6
    # overlay changes face pixels only: outside the face masks the image is untouched
    overlay = ex.overlay()
    assert overlay.shape == astronaut.shape and overlay.dtype == np.uint8
    outside = ex.coverage == 0
    assert np.array_equal(overlay[outside], astronaut[outside])
    if face.fake_probability > 0.05 and face.heatmap.max() > 0:
        assert not np.array_equal(overlay[y1:y2, x1:x2], astronaut[y1:y2, x1:x2])
    png = Image.open(io.BytesIO(ex.overlay_png(max_side=256)))
    assert png.format == "PNG" and png.size == (256, 256)
    d = ex.to_dict()
    assert d["faces"][0]["label"] == face.label and d["prediction"]["kind"] == "image"
    assert d["layers"] == list(ex.layers)


def test_report_has_verdicts_colour_bar_and_footer(explainer, astronaut):
    ex = explainer(astronaut)
    overlay, report = ex.overlay(), ex.report()
    h, w = overlay.shape[:2]
    assert report.dtype == np.uint8 and report.shape[1] == w and report.shape[0] > h + 40
    strip = report[h:]
    assert strip.std() > 10  # a colour bar and text, not a blank band
    # the colour bar: its colour (not grey) rises from left to right along one row
    bar_row = strip[strip.shape[0] // 6]
    sat = bar_row.max(axis=1).astype(int) - bar_row.min(axis=1)
    assert sat[: w // 8].mean() < sat[w // 4 : w // 3].mean()
    # the face's box and verdict label are drawn in the verdict's colour; elsewhere the image
    # part is the overlay itself
    face = ex.faces[0]
    x1, y1, x2, y2 = (int(v) for v in face.box)
    changed = np.any(report[:h] != overlay, axis=2)
    assert changed[max(0, y1 - 25) : y1 + 2, x1:x2].mean() > 0.3  # the label above the box
    far = np.ones((h, w), bool)
    far[max(0, y1 - 40) : y2 + 40, :] = False
    assert not changed[far].any()
    png = Image.open(io.BytesIO(ex.report_png()))
    assert png.size == (w, report.shape[0])


def test_report_text(explainer, astronaut):
    """What the strip says: the model, its threshold, its limits and the method."""
    ex = explainer(astronaut)
    notes = ex.method_note
    assert "Grad-CAM at blocks.3" in notes and "LayerCAM at blocks.2, blocks.1" in notes
    assert notes.startswith("Heatmap of the model:")  # not "the CNN": a model may be a ViT


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
    # (a 32 px model: coarse maps; test_explain_localisation checks positions sharply)
    assert heat[y1:y2, xm:x2].mean() > 1.25 * heat[y1:y2, x1:xm].mean()
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
    report = ex.report()  # four boxes and labels fit
    assert report.shape[0] > image.shape[0] and report.shape[1] == image.shape[1]


def test_no_face_gives_empty_heatmap(explainer):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    ex = explainer(image)
    assert ex.faces == [] and ex.prediction["label"] == "no_face"
    assert ex.heatmap.max() == 0 and np.array_equal(ex.overlay(), image)
    assert ex.report().shape[0] > image.shape[0]  # the strip still says what was run


def test_bad_inputs(explainer, detector, face_video):
    with pytest.raises(MediaError, match="video"):
        explainer(face_video.read_bytes())
    with pytest.raises(MediaError, match="video"):
        explainer(face_video)
    with pytest.raises(MediaError):
        explainer(b"definitely not an image")
    with pytest.raises(InputError, match="method"):
        Explainer(detector, method="lime")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="no layer"):
        Explainer(detector, layers=["nope"])
    with pytest.raises(InputError, match="min_side"):
        Explainer(detector, min_side=600, max_side=500)


@pytest.mark.parametrize("arch", ["efficientnet_lite0", "legacy_xception", "mobilenetv2_100"])
def test_cam_layer_of_every_backbone_gives_a_heatmap(tmp_path, arch):
    ex = Explainer(_checkpoint(tmp_path, arch, 64), device="cpu")
    assert len(ex.layers) >= 2  # finer stages were found
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    heat = ex.heatmaps(crops)
    assert heat.shape == (2, 64, 64)
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    assert _hooks(ex.model) == 0


def test_finer_layers_of_the_shipped_backbone():
    """EfficientNet-Lite0 at 192 px (facetrust-default's CNN): 6x6, then 12x12 and 24x24."""
    import torch

    from facetrust.detect.cam import finer_layers
    from facetrust.models import create_model

    model = create_model("efficientnet_lite0").eval()
    layers = finer_layers(model, "bn2", 192)
    assert layers == ["bn2", "blocks.4", "blocks.2"]
    sides = {}
    hooks = [
        model.get_submodule(n).register_forward_hook(
            lambda _m, _i, o, n=n: sides.__setitem__(n, o.shape[-1])
        )
        for n in layers
    ]
    with torch.no_grad():
        model(torch.zeros(1, 3, 192, 192))
    for hk in hooks:
        hk.remove()
    assert [sides[n] for n in layers] == [6, 12, 24]
    assert finer_layers(model, "bn2", 192, extra=0) == ["bn2"]


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_single_layer_maps_match_pytorch_grad_cam(tmp_path, method):
    """One layer, no smoothing: the same maps as the reference implementation."""
    import torch

    from facetrust._torchvision_compat import ensure_torchvision

    ensure_torchvision()  # pytorch_grad_cam imports torchvision
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus

    from facetrust.detect.cam import MultiLayerCAM
    from facetrust.models import create_model

    torch.manual_seed(0)
    model = create_model("tiny_cnn").eval()
    x = torch.rand(3, 3, 64, 64)
    ours, _ = MultiLayerCAM(model, ["blocks.2"], method).per_layer(x)
    ref_cls = GradCAM if method == "gradcam" else GradCAMPlusPlus

    class Fake:
        def __call__(self, out):
            return out[..., 0]

    with ref_cls(model=model, target_layers=[model.get_submodule("blocks.2")]) as cam:
        # the reference rescales to the input size; compare at the layer's own 8x8 grid
        cam.get_target_width_height = lambda _x: (8, 8)
        ref = cam(input_tensor=x, targets=[Fake()] * 3)
    got = ours[0].numpy()
    got = got - got.min(axis=(1, 2), keepdims=True)
    got = got / (got.max(axis=(1, 2), keepdims=True) + 1e-7)
    assert got.shape == ref.shape == (3, 8, 8)
    np.testing.assert_allclose(got, ref, atol=5e-3)  # float32 sums in another order


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
    png = Image.open(out)
    assert png.size[0] == 512 and png.size[1] > 512  # the image, then the colour-bar strip
    res = runner.invoke(app, [*args, "--method", "layercam"])
    assert res.exit_code == 0 and "heatmap written to" in res.stdout

    bad_method = runner.invoke(app, [*args, "--method", "lime"])
    assert bad_method.exit_code == 2 and "unknown method" in bad_method.output
    missing = runner.invoke(app, ["explain", str(tmp_path / "nope.jpg"), "-o", str(out)])
    assert missing.exit_code == 2 and "not a file" in missing.output
    video = runner.invoke(
        app, ["explain", str(face_video), "-o", str(out), "--model", str(tiny_checkpoint)]
    )
    assert video.exit_code == 1 and "video" in video.output
    # no face: says so, exits 1, writes nothing
    noface = tmp_path / "noise.png"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(noface)
    out2 = tmp_path / "none.png"
    res = runner.invoke(
        app, ["explain", str(noface), "-o", str(out2), "--model", str(tiny_checkpoint)]
    )
    assert res.exit_code == 1 and "no face found" in res.output and not out2.exists()
    assert "written to" not in res.output


def test_small_images_are_upscaled_for_the_report(detector, astronaut):
    small = np.ascontiguousarray(astronaut[::2, ::2])  # 256 px
    ex = Explainer(detector, min_side=512)(small)
    assert ex.scale == 2.0 and ex.image.shape == (512, 512, 3)
    # boxes and peaks stay in the input's pixels
    assert ex.faces[0].box == pytest.approx(ex.prediction["faces"][0]["box"], abs=0.06)


def test_max_side_composites_at_a_lower_resolution(detector, astronaut):
    full = Explainer(detector)(astronaut)
    small = Explainer(detector, max_side=128)(astronaut)
    assert small.scale == 0.25 and small.image.shape == (128, 128, 3)
    assert small.heatmap.shape == (128, 128) and small.overlay().shape == (128, 128, 3)
    assert small.faces[0].box == full.faces[0].box  # boxes stay in original pixels
    assert small.prediction["width"] == 512
    x1, y1, x2, y2 = (int(v / 4) for v in full.faces[0].box)
    assert small.coverage[(y1 + y2) // 2, (x1 + x2) // 2] > 0.99


def test_api_body_carries_the_report(explainer, astronaut):
    """/v1/explain's body: the overlay (image geometry) and the CLI's annotated report."""
    import base64

    from facetrust.serve.api import explanation_body

    ex = explainer(astronaut)
    body = explanation_body(ex)
    heat = Image.open(io.BytesIO(base64.b64decode(body["heatmap_png"])))
    report = Image.open(io.BytesIO(base64.b64decode(body["report_png"])))
    assert heat.size == (body["heatmap_width"], body["heatmap_height"]) == (512, 512)
    assert report.size[0] == 512 and report.size[1] > 512
    assert np.array_equal(np.asarray(report.convert("RGB")), ex.report())
    assert body["layers"] == list(ex.layers) and body["layer"] == ex.layers[0]
