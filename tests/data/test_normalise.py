"""The normaliser: one random re-encode for every image, so size, sharpness and codec cannot
separate the classes."""

from __future__ import annotations

import numpy as np
import pytest

from facetrust.data.bias import auc
from facetrust.data.normalise import Normaliser, Reencode
from facetrust.errors import InputError

from . import shortcut_batch


@pytest.fixture(scope="module")
def biased_batch() -> tuple[list[np.ndarray], np.ndarray]:
    return shortcut_batch.biased_batch(144, 176, 64)


def test_statistics_separate_the_raw_batch_and_not_the_normalised_one(biased_batch):
    images, y = biased_batch
    before = np.array([shortcut_batch.stats(im) for im in images])
    assert shortcut_batch.cv_auc(before, y) > 0.9

    norm = Normaliser(size=256, seed=0)
    out = [norm(im) for im in images]
    assert {im.shape for im in out} == {(256, 256, 3)}
    after = np.array([shortcut_batch.stats(im) for im in out])
    assert np.ptp(after[:, 0]) == 0  # size carries nothing
    assert shortcut_batch.cv_auc(after, y) < 0.65
    for k in range(1, after.shape[1]):
        a = auc(after[:, k], y)
        assert max(a, 1 - a) < 0.7, (k, a)


def test_a_weak_normaliser_leaves_the_shortcut(biased_batch):
    """The check above can fail: resizing alone (no downscale, no JPEG) keeps the cue."""
    images, y = biased_batch
    weak = Normaliser(size=256, scale=(1.0, 1.0), quality=(100, 100), seed=0)
    after = np.array([shortcut_batch.stats(weak(im)) for im in images])
    assert shortcut_batch.cv_auc(after, y) > 0.8


def test_seeded_and_shared_reencode():
    img = shortcut_batch.texture(np.random.default_rng(3), 96)
    a = Normaliser(size=64, seed=7)
    b = Normaliser(size=64, seed=7)
    assert np.array_equal(a(img), b(img))
    assert np.array_equal(a(img, 5), b(img, np.random.default_rng(5)))
    params = a.draw(11)
    assert params == a.draw(np.random.default_rng(11)) and params.apply
    assert 0.3 <= params.scale <= 0.5 and 50 <= params.quality <= 95
    twin = np.clip(img.astype(int) + 3, 0, 255).astype(np.uint8)
    out, out_twin = a.apply(img, params), a.apply(twin, params)
    assert out.shape == out_twin.shape == (64, 64, 3)
    # the same re-encode on near-identical content gives near-identical output
    assert np.abs(out.astype(int) - out_twin.astype(int)).mean() < 5


def test_probability_and_keep_size():
    img = shortcut_batch.texture(np.random.default_rng(4), 80)[:, :64]
    never = Normaliser(size=None, p=0.0)
    kept = never(img, 0)
    assert np.array_equal(kept, img) and kept is not img  # chain skipped: a copy, untouched
    always = Normaliser(size=None, p=1.0, quality=(30, 30))
    out = always(img, 0)
    assert out.shape == img.shape and not np.array_equal(out, img)
    draws = [Normaliser(p=0.3).draw(np.random.default_rng(i)).apply for i in range(400)]
    assert 0.22 < np.mean(draws) < 0.38
    assert Reencode(apply=False) == Normaliser(p=0.0).draw(1)


def test_repr_and_bad_input():
    norm = Normaliser(size=128, scale=(0.4, 0.6), quality=(60, 90), p=0.5, seed=3)
    text = repr(norm)
    for part in ("size=128", "scale=(0.4, 0.6)", "quality=(60, 90)", "p=0.5", "seed=3"):
        assert part in text
    with pytest.raises(InputError, match="uint8"):
        norm(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(InputError, match="uint8"):
        norm(np.zeros((32, 32), np.uint8))
    with pytest.raises(InputError, match="rng"):
        norm(np.zeros((32, 32, 3), np.uint8), rng="seed")
    for kwargs in (
        {"scale": (0.0, 0.5)},
        {"scale": (0.6, 0.5)},
        {"quality": (0, 90)},
        {"down_filters": ("bogus",)},
        {"up_filters": ()},
        {"p": 1.5},
        {"size": 4},
    ):
        with pytest.raises(InputError):
            Normaliser(**kwargs)
