import albumentations as A
import cv2
import numpy as np
import pytest

from facetrust.data.transforms import (
    ImageTransform,
    ResolutionEqualizer,
    eval_transform,
    train_transform,
)
from facetrust.errors import InputError


def _img(h=256, w=256, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("strength", [0.0, 0.3, 1.0, 2.0])
@pytest.mark.parametrize("shape", [(256, 256), (100, 80), (300, 420)])
def test_output_shape_and_dtype(strength, shape):
    t = train_transform(96, strength, seed=0)
    for _ in range(3):
        out = t(_img(*shape))
        assert out.shape == (96, 96, 3) and out.dtype == np.uint8


def test_strength_zero_and_eval_are_a_plain_area_resize(face256):
    want = cv2.resize(face256, (112, 112), interpolation=cv2.INTER_AREA)
    for t in (train_transform(112, 0.0), eval_transform(112)):
        assert t.names() == ["Resize"]
        assert np.array_equal(t(face256), want)
        assert np.array_equal(t(face256), want)  # deterministic


def test_pipeline_lists_every_configured_transform():
    t = train_transform(224, 1.0)
    names = t.names()
    for n in [
        "Affine", "RandomResizedCrop", "HorizontalFlip", "ColorJitter", "ResolutionEqualizer",
        "Downscale", "GaussNoise", "ISONoise", "GaussianBlur", "MotionBlur", "ImageCompression",
    ]:  # fmt: skip
        assert n in names, n
    steps = {type(s).__name__: s for s in t.pipeline.transforms}
    assert steps["ImageCompression"].quality_range == (50, 99)
    assert steps["Downscale"].scale_range == pytest.approx((0.5, 0.9))
    assert steps["Affine"].rotate == pytest.approx((-10, 10))
    assert steps["RandomResizedCrop"].scale == pytest.approx((0.8, 1.0))
    assert steps["ResolutionEqualizer"].p == pytest.approx(0.5)
    assert steps["ResolutionEqualizer"].min_side == 64
    assert len(t.describe()) == len(t.pipeline.transforms)
    assert "ResolutionEqualizer" in repr(t) and "strength=1" in repr(t)


def test_strength_scales_probabilities_and_magnitudes():
    def step(t, name):
        return next(s for s in t.pipeline.transforms if type(s).__name__ == name)

    lo, mid, hi = (train_transform(64, s) for s in (0.5, 1.0, 2.0))
    assert step(lo, "ColorJitter").p < step(mid, "ColorJitter").p < step(hi, "ColorJitter").p
    assert step(lo, "ResolutionEqualizer").p == pytest.approx(0.25)
    assert step(hi, "ResolutionEqualizer").p == pytest.approx(1.0)
    q = [step(t, "ImageCompression").quality_range[0] for t in (lo, mid, hi)]
    assert q[0] > q[1] > q[2]
    r = [step(t, "Affine").rotate[1] for t in (lo, mid, hi)]
    assert r == pytest.approx([5, 10, 20])


def test_seed_makes_results_reproducible(face256):
    a, b = train_transform(64, 1.0, seed=7), train_transform(64, 1.0, seed=7)
    outs_a = [a(face256) for _ in range(6)]
    outs_b = [b(face256) for _ in range(6)]
    assert all(np.array_equal(x, y) for x, y in zip(outs_a, outs_b, strict=True))
    assert not all(np.array_equal(outs_a[0], x) for x in outs_a[1:])  # still random per call
    c = train_transform(64, 1.0, seed=8)
    assert not all(np.array_equal(x, c(face256)) for x in outs_a)
    a.reseed(7)
    assert np.array_equal(a(face256), outs_a[0])


def test_worker_processes_reseed_from_worker_seed(face256, monkeypatch):
    import torch.utils.data

    import facetrust.data.transforms as T

    parent = train_transform(64, 1.0, seed=3)
    ref = [parent(face256) for _ in range(4)]

    class Info:
        def __init__(self, seed):
            self.seed = seed

    outs = []
    for worker_seed in (100, 101):
        t = train_transform(64, 1.0, seed=3)
        monkeypatch.setattr(T.os, "getpid", lambda: -1)
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda s=worker_seed: Info(s))
        outs.append([t(face256) for _ in range(4)])
        monkeypatch.undo()
    same = [all(np.array_equal(x, y) for x, y in zip(o, ref, strict=True)) for o in outs]
    assert not any(same)
    assert not all(np.array_equal(x, y) for x, y in zip(*outs, strict=True))


def test_resolution_equalizer_blurs_and_keeps_size():
    img = _img(128, 128)
    eq = A.Compose([ResolutionEqualizer(min_side=64, max_side=128, p=1.0)], seed=0)
    lap = [cv2.Laplacian(img, cv2.CV_32F).var()]
    for _ in range(5):
        out = eq(image=img)["image"]
        assert out.shape == img.shape and out.dtype == np.uint8
        lap.append(cv2.Laplacian(out, cv2.CV_32F).var())
    assert max(lap[1:]) < lap[0]  # the sharp noise loses high frequencies
    tiny = _img(48, 48)  # smaller than min_side: nothing to do
    assert np.array_equal(eq(image=tiny)["image"], tiny)


def test_bad_inputs_raise():
    t = train_transform(64)
    with pytest.raises(InputError):
        t(np.zeros((64, 64), np.uint8))
    with pytest.raises(InputError):
        t(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(InputError):
        train_transform(64, strength=3.0)
    with pytest.raises(InputError):
        eval_transform(0)
    assert isinstance(t, ImageTransform)
