"""ONNX export and the ONNX Runtime scorer: same probabilities as the torch scoring core (to
1e-3, in practice ~1e-7), metadata carried in the file, the runtime choice and its errors."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from facetrust.cli import app
from facetrust.detect import Detector
from facetrust.detect.experts import ClipExpert, FrequencyExpert, LinearHead, RoutedHead
from facetrust.detect.onnx_export import cached_onnx, export_onnx, onnx_cache_path
from facetrust.detect.onnx_runtime import OnnxFaceScorer
from facetrust.detect.scoring import FaceScorer, load_scorer
from facetrust.errors import InputError, ModelError
from facetrust.models import load_checkpoint, read_checkpoint_meta, save_checkpoint

LAYERS = [1, 2]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACETRUST_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def fused_checkpoint(tiny_checkpoint, tmp_path_factory):
    """The tiny CNN fused with a CLIP expert (2 blocks of a small tower) and a frequency one."""
    model, meta = load_checkpoint(tiny_checkpoint)
    rng = np.random.default_rng(1)
    d = 32 * len(LAYERS)
    clip_head = LinearHead(
        rng.normal(0, 0.1, d), rng.uniform(0.05, 0.2, d), rng.normal(0, 0.3, d), 0.2
    )
    freq_head = LinearHead(np.zeros(50), np.ones(50), np.linspace(-0.05, 0.05, 50), 0.1)
    experts = {
        "clip": ClipExpert(clip_head, layers=LAYERS).to_spec(),
        "frequency": FrequencyExpert(freq_head).to_spec(),
        "fusion": {"inputs": ["cnn", "clip", "frequency"], "weight": [1.2, 0.8, 0.5], "bias": -0.1},
    }
    fused = meta.model_copy(update={"experts": experts, "crop_size": 48, "name": "fused-onnx"})
    return save_checkpoint(tmp_path_factory.mktemp("fused") / "fused.safetensors", model, fused)


@pytest.fixture(scope="module")
def crops(face_crop):
    """Synthetic crops and the astronaut's face, at three sizes (all are resized)."""
    import cv2

    rng = np.random.default_rng(0)
    out = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(4)]
    out += [np.ascontiguousarray(cv2.resize(face_crop, (s, s))) for s in (32, 48, 256)]
    return out


def test_cnn_export_agrees_with_torch(tiny_checkpoint, crops, tmp_path):
    out = export_onnx(tiny_checkpoint, tmp_path / "tiny.onnx")
    onnx_scores = OnnxFaceScorer(out, batch_size=3, threads=1)(crops)
    model, meta = load_checkpoint(tiny_checkpoint)
    torch_scores = FaceScorer(model, meta)(crops)
    assert onnx_scores.inputs == torch_scores.inputs == ["cnn"]
    np.testing.assert_allclose(onnx_scores.logits, torch_scores.logits, atol=1e-4)
    np.testing.assert_allclose(onnx_scores.probability, torch_scores.probability, atol=1e-3)


def test_fused_export_agrees_with_torch(fused_checkpoint, tower, crops, tmp_path, float32_clip):
    out = export_onnx(fused_checkpoint, tmp_path / "fused.onnx", tower=tower)
    scorer = OnnxFaceScorer(out, batch_size=4, threads=1)
    assert scorer.graph["experts"] == ["cnn", "clip"]
    assert scorer.graph["numpy_experts"] == ["frequency"]
    got = scorer(crops)
    model, meta = load_checkpoint(fused_checkpoint)
    want = FaceScorer(model, meta, runtime={"clip": {"tower": tower}})(crops)
    assert got.inputs == want.inputs == ["cnn", "clip", "frequency"]
    np.testing.assert_allclose(got.logits, want.logits, atol=1e-4)
    np.testing.assert_allclose(got.probability, want.probability, atol=1e-3)
    assert np.ptp(got.logits[:, 1]) > 0.1  # the CLIP branch tells the crops apart
    # the CNN alone, and CNN logits given from elsewhere
    np.testing.assert_allclose(scorer.cnn_logits(crops), want.logits[:, 0], atol=1e-4)
    reuse = scorer.columns(crops, cnn=np.zeros(len(crops)))
    assert np.all(reuse[:, 0] == 0) and np.allclose(reuse[:, 1:], want.logits[:, 1:], atol=1e-4)


def test_routed_clip_head_exports_and_agrees_with_torch(
    fused_checkpoint, tower, crops, tmp_path, float32_clip
):
    model, meta = load_checkpoint(fused_checkpoint)
    rng = np.random.default_rng(2)
    d = 32 * len(LAYERS)
    part = lambda s: LinearHead(  # noqa: E731
        rng.normal(0, 0.1, d), rng.uniform(0.05, 0.2, d), rng.normal(0, s, d), 0.1
    )
    feats = ClipExpert(layers=LAYERS, tower=tower).features(crops)
    router = part(0.3)
    router.bias -= float(np.median(router(feats)))  # half the crops lean to each head
    routed = RoutedHead(part(0.3), part(0.3), router)
    p = routed.route(feats)
    assert p.min() < 0.4 and p.max() > 0.6
    experts = dict(meta.experts)
    experts["clip"] = ClipExpert(routed, layers=LAYERS).to_spec()
    path = save_checkpoint(
        tmp_path / "routed.safetensors", model, meta.model_copy(update={"experts": experts})
    )
    out = export_onnx(path, tmp_path / "routed.onnx", tower=tower)
    got = OnnxFaceScorer(out, batch_size=4, threads=1)(crops)
    want = FaceScorer(model, read_checkpoint_meta(path), runtime={"clip": {"tower": tower}})(crops)
    np.testing.assert_allclose(got.logits, want.logits, atol=1e-4)
    np.testing.assert_allclose(want.logits[:, 1], routed(feats), atol=1e-4)
    for alone in (routed.clean, routed.both):  # the mix is neither of its heads alone
        assert np.abs(alone(feats) - want.logits[:, 1]).max() > 1e-2


def test_metadata_travels_in_the_onnx_file(fused_checkpoint, tower, tmp_path):
    from facetrust.cache import file_sha256

    out = export_onnx(fused_checkpoint, tmp_path / "fused.onnx", tower=tower)
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    meta = read_checkpoint_meta(fused_checkpoint)
    assert json.loads(props["facetrust.meta"]) == meta.model_dump(mode="json")
    assert props["facetrust.model_sha256"] == file_sha256(fused_checkpoint)
    assert json.loads(props["facetrust.calibration"]) == meta.calibration.model_dump(mode="json")
    assert json.loads(props["facetrust.crop_contract"])["size"] == 48
    scorer = OnnxFaceScorer(out, threads=1)
    assert scorer.meta == meta and scorer.contract.size == 48


def test_int8_export_quantises_the_matmuls(fused_checkpoint, tower, crops, tmp_path):
    out = export_onnx(fused_checkpoint, tmp_path / "q.onnx", tower=tower, int8=True)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeLinear" in ops
    scorer = OnnxFaceScorer(out, threads=1)
    assert scorer.graph["int8"] is True
    p = scorer(crops).probability
    assert p.shape == (len(crops),) and np.all((p >= 0) & (p <= 1))


def test_detector_on_the_onnx_runtime(tiny_checkpoint, astronaut, tmp_path):
    torch_result = Detector(tiny_checkpoint, device="cpu", runtime="torch")(astronaut)
    # the checkpoint: exported to the cache on first use, then found there by "auto"
    det = Detector(tiny_checkpoint, runtime="onnx")
    assert det.runtime == "onnx" and det.scorer.path == onnx_cache_path(tiny_checkpoint)
    assert det.scorer.path.with_name(det.scorer.path.name + ".data").is_file()
    result = det(astronaut)
    assert len(result.faces) == len(torch_result.faces) == 1
    assert result.fake_probability == pytest.approx(torch_result.fake_probability, abs=1e-3)
    assert result.model_sha256 == torch_result.model_sha256
    assert Detector(tiny_checkpoint).runtime == "onnx"  # auto: the cached export
    # an exported file directly; Grad-CAM still finds no torch model in it
    out = export_onnx(tiny_checkpoint, tmp_path / "t.onnx")
    direct = Detector(out)
    assert direct.runtime == "onnx"
    assert direct(astronaut).fake_probability == pytest.approx(result.fake_probability, abs=1e-6)
    with pytest.raises(ModelError, match="torch model"):
        _ = direct.model


def test_auto_is_torch_without_a_cached_export(tiny_checkpoint):
    assert not onnx_cache_path(tiny_checkpoint).exists()
    runtime, _, scorer = load_scorer(tiny_checkpoint, runtime="auto", device="cpu")
    assert runtime == "torch" and isinstance(scorer, FaceScorer)


def test_runtime_errors(tiny_checkpoint, tmp_path):
    out = export_onnx(tiny_checkpoint, tmp_path / "t.onnx")
    with pytest.raises(InputError, match="runs with --runtime onnx"):
        load_scorer(out, runtime="torch")
    with pytest.raises(InputError, match="valid: auto, torch, onnx"):
        load_scorer(tiny_checkpoint, runtime="tensorrt")
    with pytest.raises(InputError, match="runs on the CPU"):
        load_scorer(tiny_checkpoint, runtime="onnx", device="cuda")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        OnnxFaceScorer(bad)
    plain = tmp_path / "plain.onnx"
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(
        onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), plain
    )
    with pytest.raises(ModelError, match="not a facetrust ONNX export"):
        OnnxFaceScorer(plain)
    with pytest.raises(ModelError, match="no ONNX export"):
        cached_onnx(tiny_checkpoint, build=False)


def test_cli_export_and_detect_with_the_onnx_runtime(tiny_checkpoint, astronaut, tmp_path):
    from PIL import Image

    image = tmp_path / "a.png"
    Image.fromarray(astronaut).save(image)
    runner = CliRunner()
    out = tmp_path / "m.onnx"
    res = runner.invoke(app, ["export", "-m", str(tiny_checkpoint), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.is_file() and "MB" in res.output
    # no -m: FACETRUST_MODEL names the model, as for detect (which reads its export)
    env_out = tmp_path / "env.onnx"
    res = runner.invoke(
        app, ["export", "-o", str(env_out)], env={"FACETRUST_MODEL": str(tiny_checkpoint)}
    )
    assert res.exit_code == 0, res.output
    assert env_out.stat().st_size == pytest.approx(out.stat().st_size, rel=0.01)
    rows = []
    for args in (["--runtime", "torch", "-m", str(tiny_checkpoint)], ["-m", str(out)]):
        res = runner.invoke(app, ["detect", str(image), "--json", *args])
        assert res.exit_code == 0, res.output
        rows.append(json.loads(res.output.strip().splitlines()[-1]))
    assert rows[1]["fake_probability"] == pytest.approx(rows[0]["fake_probability"], abs=1e-3)
    res = runner.invoke(app, ["detect", str(image), "--runtime", "torch", "-m", str(out)])
    assert res.exit_code == 2 and "runs with --runtime onnx" in res.output


def test_onnx_detection_does_not_import_torch(tiny_checkpoint, astronaut, tmp_path):
    """The point of the ONNX path for start-up: torch (seconds to import) stays out."""
    from PIL import Image

    out = export_onnx(tiny_checkpoint, tmp_path / "t.onnx")
    image = tmp_path / "a.png"
    Image.fromarray(astronaut).save(image)
    code = (
        "import sys\n"
        "from facetrust.cli import app\n"
        f"try: app([{'detect'!r}, {str(image)!r}, '-m', {str(out)!r}, '--json'])\n"
        "except SystemExit as e: assert e.code == 0, e.code\n"
        "bad = [m for m in ('torch', 'torchvision', 'timm') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["faces"]


def test_onnx_threads_follow_facetrust_threads(tiny_checkpoint, tmp_path, monkeypatch):
    out = export_onnx(tiny_checkpoint, tmp_path / "t.onnx")
    monkeypatch.setenv("FACETRUST_THREADS", "1")
    opts = OnnxFaceScorer(out).session.get_session_options()
    assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 1
    assert OnnxFaceScorer(out, threads=2).session.get_session_options().intra_op_num_threads == 2


def test_external_weights_are_replaced_not_appended(tiny_checkpoint, crops, tmp_path):
    out = tmp_path / "e.onnx"
    export_onnx(tiny_checkpoint, out, external_data=True)
    data = tmp_path / "e.onnx.data"
    size = data.stat().st_size
    assert size > out.stat().st_size  # the weights live beside the graph
    export_onnx(tiny_checkpoint, out, external_data=True)
    assert data.stat().st_size == size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.onnx", "e.onnx.data"]
    model, meta = load_checkpoint(tiny_checkpoint)
    np.testing.assert_allclose(
        OnnxFaceScorer(out, threads=1)(crops).probability,
        FaceScorer(model, meta)(crops).probability,
        atol=1e-3,
    )


def test_auto_keeps_torch_for_a_clip_model_on_a_bf16_cpu(fused_checkpoint, monkeypatch):
    import facetrust.detect.scoring as scoring

    cached = onnx_cache_path(fused_checkpoint)
    assert not scoring._onnx_pays(fused_checkpoint, "auto", True)  # nothing cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"")  # only its presence is read here
    monkeypatch.setattr(scoring, "cpu_bf16_native", lambda: True)
    assert scoring._onnx_pays(fused_checkpoint, "auto", quick_start=True)  # one image: start-up
    assert not scoring._onnx_pays(fused_checkpoint, "cpu", quick_start=False)  # many: bf16 torch
    assert not scoring._onnx_pays(fused_checkpoint, "cuda", quick_start=True)
    monkeypatch.setattr(scoring, "cpu_bf16_native", lambda: False)
    assert scoring._onnx_pays(fused_checkpoint, "auto", quick_start=False)
