"""The LayerNorm-tuned CLIP detector (GenD-style), on a tiny random CLIP-shaped tower."""

import copy
import json

import numpy as np
import pytest
import torch

from facetrust.errors import ModelError
from facetrust.models import create_model, load_checkpoint, save_checkpoint
from facetrust.models.checkpoint import CheckpointMeta
from facetrust.models.clip import ClipVisionTower


@pytest.fixture
def tiny_tower(monkeypatch):
    """A 2-block, 32-wide ViT with CLIP's layout stands in for the 86 M-weight tower."""
    torch.manual_seed(0)
    tower = ClipVisionTower(width=32, layers=2, heads=2, embed=16)
    for p in tower.parameters():
        p.data.normal_(0, 0.1)
        p.requires_grad_(False)
    tower.eval()
    import facetrust.models.clip_tuned as ct

    monkeypatch.setattr(ct, "shared_clip_vit_b16", lambda: tower)
    return tower


def _model(**kw):
    return create_model("clip_vit_b16_ln", layers=[1, 2], **kw)


def test_state_holds_only_norms_and_head(tiny_tower):
    m = _model()
    keys = set(m.state_dict())
    # pre-LN, 2 per block, post-LN: 6 LayerNorms x (weight, bias), and the head
    assert len([k for k in keys if k.startswith("norms.")]) == 12
    assert keys - {k for k in keys if k.startswith("norms.")} == {"head.weight", "head.bias"}
    assert not any("q_proj" in k or "fc1" in k for k in keys)
    assert m.head.in_features == 2 * 32


def test_untrained_model_reads_the_frozen_features(tiny_tower):
    m = _model().eval()
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        ours = m.features(x)
        frozen = torch.nn.functional.normalize(
            tiny_tower.block_tokens(x, (1, 2), "cls").float(), dim=-1
        ).flatten(1)
    assert torch.allclose(ours, frozen, atol=1e-2)  # bf16 autocast where the CPU has it
    assert torch.allclose(ours.reshape(3, 2, 32).norm(dim=-1), torch.ones(3, 2), atol=1e-4)


def test_training_moves_norms_and_head_only_and_learns(tiny_tower):
    """A pattern the frozen features barely separate is learnt by tuning the norms + head;
    not one weight of the tower changes."""
    torch.manual_seed(1)
    m = _model()
    before = {k: v.clone() for k, v in tiny_tower.state_dict().items()}
    x = torch.randn(16, 3, 224, 224) * 0.2
    y = torch.tensor([0.0, 1.0] * 8)
    x[y == 1, :, ::2, ::2] += 0.6  # the "fake" class: a fine periodic trace
    opt = torch.optim.AdamW(m.parameters(), lr=0.01, weight_decay=0.0)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(m(x)[:, 0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    for k, v in tiny_tower.state_dict().items():
        assert torch.equal(v, before[k]), k
    moved = [
        n
        for n, p in m.tuned_norms().items()
        if not torch.equal(p, dict(tiny_tower.named_parameters())[n])
    ]
    assert len(moved) >= 6


def test_checkpoint_round_trip_is_small_and_exact(tiny_tower, tmp_path):
    m = _model()
    with torch.no_grad():
        for p in m.norms.values():
            p.add_(0.05)
        m.head.weight.normal_()
    meta = CheckpointMeta.for_model(m, name="ln-test")
    path = save_checkpoint(tmp_path / "ln.safetensors", m, meta)
    assert path.stat().st_size < 20_000  # norms + head, not the tower
    loaded, meta2 = load_checkpoint(path)
    assert meta2.arch == "clip_vit_b16_ln" and meta2.input_size == 224
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(m.eval()(x), loaded(x), atol=1e-5)


def test_copies_share_the_tower_not_the_norms(tiny_tower):
    m = _model()
    c = copy.deepcopy(m)
    assert c._tokens.tower is m._tokens.tower
    with torch.no_grad():
        next(iter(c.norms.values())).add_(1.0)
    assert not torch.equal(next(iter(c.norms.values())), next(iter(m.norms.values())))


def test_gradcam_layer_is_the_patch_grid(tiny_tower):
    from facetrust.detect.cam import MultiLayerCAM, finer_layers

    m = _model().eval()
    assert finer_layers(m, m.facetrust_cam_layer, 224) == ["cam"]
    maps, logits = MultiLayerCAM(m, ["cam"])(torch.randn(2, 3, 224, 224), 64)
    assert maps.shape == (2, 64, 64) and np.isfinite(maps).all() and logits.shape == (2,)


def test_wrong_input_size_and_options_are_refused(tiny_tower):
    m = _model()
    with pytest.raises(ValueError, match="224"):
        m(torch.zeros(1, 3, 160, 160))
    with pytest.raises(ModelError, match="layers"):
        create_model("clip_vit_b16_ln", layers=[3])
    with pytest.raises(ModelError, match="pool"):
        create_model("clip_vit_b16_ln", layers=[1], pool="max")


def _tuned(model):
    with torch.no_grad():
        for p in model.norms.values():
            p.mul_(1.3).add_(0.02)
    return model


def test_clip_expert_with_tuned_norms_reads_the_tuned_features(tiny_tower, face_crop):
    """The CLIP expert of a fused model, given a tuned model's LayerNorms, computes exactly
    that model's features; its spec carries them and rebuilds the same expert; its cache key
    and feature cache are apart from the untuned expert's."""
    from facetrust.detect.experts import ClipExpert, LinearHead, clip_pixels
    from facetrust.models.clip import CLIP_MEAN, CLIP_STD
    from facetrust.models.clip_tuned import encode_norms
    from facetrust.models.preprocess import to_tensor

    m = _tuned(_model()).eval()
    norms = encode_norms(m.tuned_norms())
    import cv2

    crop = cv2.resize(np.ascontiguousarray(face_crop), (256, 256), interpolation=cv2.INTER_AREA)
    expert = ClipExpert(layers=(1, 2), l2=True, norms=norms, tower=tiny_tower)
    with torch.no_grad():
        want = m.features(to_tensor(clip_pixels([crop]), CLIP_MEAN, CLIP_STD)).numpy()
    np.testing.assert_allclose(expert.features([crop]), want, atol=2e-2)
    plain = ClipExpert(layers=(1, 2), l2=True, tower=tiny_tower)
    assert np.abs(plain.features([crop]) - want).max() > 0.05  # the norms matter
    assert expert.cache_key() != plain.cache_key()
    assert plain.select(expert.options, want) is None and expert.select(plain.options, want) is None

    expert.head = LinearHead(np.zeros(64), np.ones(64), np.linspace(-1, 1, 64), 0.1)
    spec = json.loads(json.dumps(expert.to_spec()))  # as a checkpoint's metadata holds it
    again = ClipExpert.from_spec(spec, tower=tiny_tower)
    np.testing.assert_allclose(again([crop]), expert([crop]))
    spec["tuned"] = "0" * 16
    with pytest.raises(ModelError, match="digest"):
        ClipExpert.from_spec(spec, tower=tiny_tower)
    spec.pop("tuned")
    spec["norms"] = {"pre_layrnorm.weight": "not base64!"}
    with pytest.raises(ModelError, match="LayerNorms"):
        ClipExpert.from_spec(spec, tower=tiny_tower).features([crop])


def test_fuse_takes_norms_only_from_a_tuned_clip_checkpoint(tiny_tower, tmp_path):
    from facetrust.errors import InputError
    from facetrust.models.clip_tuned import decode_norms
    from facetrust.train.fusion import tuned_norms_of

    m = _tuned(_model())
    path = save_checkpoint(tmp_path / "ln.safetensors", m, CheckpointMeta.for_model(m))
    norms = decode_norms(tuned_norms_of(path))
    assert set(norms) == set(m.names)
    assert all(torch.equal(norms[n], p.detach()) for n, p in m.tuned_norms().items())
    cnn = create_model("tiny_cnn")
    other = save_checkpoint(tmp_path / "cnn.safetensors", cnn, CheckpointMeta.for_model(cnn))
    with pytest.raises(InputError, match="clip_vit_b16_ln"):
        tuned_norms_of(other)


def test_onnx_export_agrees_with_torch(tiny_tower, tmp_path):
    """``facetrust export`` of a tuned model: a float graph holding the tuned norms."""
    ort = pytest.importorskip("onnxruntime")
    from facetrust.detect.onnx_export import export_onnx
    from facetrust.models.clip import CLIP_MEAN, CLIP_STD
    from facetrust.models.preprocess import to_tensor

    m = _tuned(_model()).eval()
    with torch.no_grad():
        m.head.weight.normal_()
    path = save_checkpoint(tmp_path / "ln.safetensors", m, CheckpointMeta.for_model(m, name="x"))
    onnx_path = export_onnx(path, tmp_path / "ln.onnx")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = (np.random.default_rng(0).random((2, 224, 224, 3)) * 255).astype(np.uint8)
    (got,) = session.run(None, {"cnn_pixels": x})
    with torch.no_grad():
        want = m(to_tensor(x, CLIP_MEAN, CLIP_STD))[:, 0].numpy()
    np.testing.assert_allclose(got.reshape(-1), want, atol=0.05)
    assert np.abs(want).max() > 0.1  # a real logit, not a constant
