"""The CLIP tower and expert at another input side (``at_size``, ``ClipExpert(size=...)``,
``facetrust fuse --clip-size``): fewer patches, the same weights, features of their own."""

import numpy as np
import pytest
import torch

from facetrust.detect.experts import ClipExpert, LinearHead, clip_cls_features, clip_pixels
from facetrust.detect.experts.base import expert_class
from facetrust.detect.onnx_export import export_onnx
from facetrust.detect.onnx_runtime import OnnxFaceScorer
from facetrust.detect.scoring import FaceScorer
from facetrust.errors import InputError, ModelError
from facetrust.models import load_checkpoint, save_checkpoint
from facetrust.models.clip import ClipVisionTower, at_size
from facetrust.train.fusion import fusion_spec


def test_at_size_resizes_the_position_grid_and_shares_every_other_weight(tower):
    assert at_size(tower, 224) is tower
    small = at_size(tower, 160)
    assert small.size == 160 and tower.size == 224
    assert small.position_embedding.shape == (101, 32)  # 10 x 10 patches + the class token
    assert tower.position_embedding.shape == (197, 32)  # the original is left as it was
    torch.testing.assert_close(small.position_embedding[0], tower.position_embedding[0])
    assert small.layers[1].fc1.weight.data_ptr() == tower.layers[1].fc1.weight.data_ptr()
    assert not any(p.requires_grad for p in small.parameters())
    # a smooth grid is resampled, not re-drawn: a ramp over the rows stays a ramp
    ramp = ClipVisionTower(width=4, layers=1, heads=1, embed=2)
    with torch.no_grad():
        rows = torch.linspace(-1, 1, 14).repeat_interleave(14)
        ramp.position_embedding[1:] = rows[:, None].expand(-1, 4)
    grid = at_size(ramp, 112).position_embedding[1:, 0].reshape(7, 7)
    assert torch.all(grid[1:] > grid[:-1])  # rising down the rows
    assert torch.allclose(grid, grid[:, :1].expand(-1, 7), atol=1e-6)  # flat along them
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        assert small.block_tokens(x, (1, 2), "cls+mean").shape == (2, 2, 64)
        assert small(x).shape == (2, 8)
    with pytest.raises(ValueError, match="160, 160"):
        small(torch.randn(1, 3, 224, 224))


@pytest.mark.parametrize("bad", [100, 0, 48, 464, True, "160", 160.0])
def test_sizes_off_the_patch_grid_are_refused(tower, bad):
    with pytest.raises(ValueError, match="multiple of 16"):
        at_size(tower, bad)
    with pytest.raises(ModelError, match="multiple of 16"):
        ClipExpert(size=bad)


def test_the_center_pool_is_only_defined_at_224(tower):
    with pytest.raises(ModelError, match="center"):
        ClipExpert(pool="cls+center", size=160)
    with pytest.raises(ValueError, match="center"):
        at_size(tower, 160).block_tokens(torch.randn(1, 3, 160, 160), (1,), "center")


def test_expert_at_160_reads_its_own_features_and_keeps_its_size(
    tower, face_crop, monkeypatch, float32_clip
):
    import facetrust.models.clip as clip_mod

    monkeypatch.setattr(clip_mod, "cpu_bf16", lambda: False)
    monkeypatch.setattr(clip_mod, "shared_clip_vit_b16", lambda: tower)
    clip_mod.scoring_clip_vit_b16.cache_clear()
    try:
        small = ClipExpert(layers=(1, 2), pool="cls+mean", l2=True, size=160)
        full = ClipExpert(layers=(1, 2), pool="cls+mean", l2=True)
        got = small.features([face_crop])
        want = clip_cls_features(
            at_size(tower, 160), clip_pixels([face_crop], 160), (1, 2), pool="cls+mean", l2=True
        )
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert got.shape == full.features([face_crop]).shape == (1, 128)
        assert not np.allclose(got, full.features([face_crop]), atol=1e-3)
    finally:
        clip_mod.scoring_clip_vit_b16.cache_clear()
    assert small.options["size"] == 160 and "size" not in full.options  # 224 writes as before
    again = expert_class("clip")(**small.options)
    assert again.size == 160
    # a feature cache of the other size is not read as mine
    feats = np.ones((3, 128), np.float32)
    assert small.select(full.options, feats) is None
    assert full.select(small.options, feats) is None
    assert small.select(small.options, feats) is feats


def test_fuse_spec_takes_clip_size_and_names_the_flag():
    spec = fusion_spec("clip,frequency", clip_pool="cls+mean", clip_l2=True, clip_size=160)
    assert spec.options["clip"]["size"] == 160
    assert "size" not in fusion_spec("clip,frequency").options["clip"]
    with pytest.raises(InputError, match="--clip-size"):
        fusion_spec("clip,frequency", clip_size=150)
    with pytest.raises(InputError, match="--clip-size needs the clip expert"):
        fusion_spec("frequency", clip_size=160)
    with pytest.raises(InputError, match="center"):
        fusion_spec("clip", clip_pool="cls+center", clip_size=160)


def test_onnx_export_of_a_160_px_clip_expert_agrees_with_torch(
    tiny_checkpoint, tower, face_crop, tmp_path, float32_clip, monkeypatch
):
    monkeypatch.setenv("FACETRUST_CACHE_DIR", str(tmp_path / "cache"))
    model, meta = load_checkpoint(tiny_checkpoint)
    rng = np.random.default_rng(1)
    head = LinearHead(rng.normal(0, 0.1, 64), rng.uniform(0.05, 0.2, 64), rng.normal(0, 0.3, 64), 0)
    experts = {
        "clip": ClipExpert(head, layers=[1, 2], size=160).to_spec(),
        "fusion": {"inputs": ["cnn", "clip"], "weight": [1.0, 0.8], "bias": 0.0},
    }
    fused = meta.model_copy(update={"experts": experts, "crop_size": 48, "name": "px160"})
    path = save_checkpoint(tmp_path / "px160.safetensors", model, fused)
    small = at_size(tower, 160)
    out = export_onnx(path, tmp_path / "px160.onnx", tower=small)
    scorer = OnnxFaceScorer(out, batch_size=2, threads=1)
    assert scorer.graph["sizes"]["clip"] == 160
    crops = [face_crop] + [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(2)]
    got = scorer(crops)
    model, meta = load_checkpoint(path)
    want = FaceScorer(model, meta, runtime={"clip": {"tower": small}})(crops)
    np.testing.assert_allclose(got.logits, want.logits, atol=1e-4)
    assert np.ptp(got.logits[:, 1]) > 0.01
