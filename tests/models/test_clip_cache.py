"""The float CLIP tower is dequantised once and read back from the user cache."""

import torch

from facetrust.models.clip import clip_onnx_path, load_clip_vit_b16


def test_clip_tower_is_cached_by_the_onnx_files_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("FACETRUST_CACHE_DIR", str(tmp_path))
    built = load_clip_vit_b16()
    files = list((tmp_path / "clip").glob("clip-vit-b16-*.safetensors"))
    assert len(files) == 1
    cached = load_clip_vit_b16()
    a, b = built.state_dict(), cached.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(p.requires_grad for p in cached.parameters()) and not cached.training
    x = torch.zeros(1, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(built(x), cached(x), atol=1e-5, rtol=1e-5)
    # a damaged cache file is rebuilt, not trusted
    files[0].write_bytes(files[0].read_bytes()[:1000])
    again = load_clip_vit_b16(clip_onnx_path())
    assert torch.equal(again.state_dict()["layers.0.fc1.weight"], a["layers.0.fc1.weight"])
    assert files[0].stat().st_size > 300e6
