"""The normaliser: one random re-encode for every image, so size, sharpness and codec cannot
separate the classes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facetrust.data.bias import auc
from facetrust.data.normalise import Normaliser, Reencode
from facetrust.errors import InputError


def _texture(rng: np.random.Generator, n: int) -> np.ndarray:
    """A natural-looking (1/f^a) colour texture, ``(n, n, 3)`` uint8; slope and contrast vary."""
    f = np.fft.fftfreq(n)
    r = np.hypot(f[:, None], np.fft.rfftfreq(n)[None])
    r[0, 0] = 1.0
    phase = rng.uniform(0, 2 * np.pi, (2, *r.shape))
    fields = [np.fft.irfft2(np.exp(1j * p) / r ** rng.uniform(0.8, 1.6), s=(n, n)) for p in phase]
    fields = [(g - g.mean()) / g.std() for g in fields]
    mix = rng.normal(0, 1, (2, 3)) * 0.5 + np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    img = np.stack(fields, -1) @ mix
    return np.clip(128 + rng.uniform(20, 60) * img / img.std(), 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def _stats(img: np.ndarray) -> list[float]:
    """Size, sharpness and codec statistics: side, log Laplacian variance, log share of
    spectral energy above 1/4 cycle per pixel, 8x8 blockiness of horizontal gradients."""
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)
    lap = cv2.Laplacian(g, cv2.CV_64F).var()
    power = np.abs(np.fft.fft2(g - g.mean())) ** 2
    fr = np.hypot(np.fft.fftfreq(g.shape[0])[:, None], np.fft.fftfreq(g.shape[1])[None])
    high = power[fr > 0.25].sum() / power.sum()
    col = np.abs(np.diff(g, axis=1)).mean(axis=0)
    edge = np.arange(col.size) % 8 == 7
    block = col[edge].mean() / (col[~edge].mean() + 1e-9)
    return [float(img.shape[0]), np.log(lap + 1e-9), np.log(high + 1e-12), block]


def _cv_auc(x: np.ndarray, y: np.ndarray, seed: int = 1) -> float:
    """Two-fold cross-fitted AUC of a linear discriminant (Fisher LDA) on standardised stats."""
    idx = np.random.default_rng(seed).permutation(len(y))
    halves = (idx[: len(y) // 2], idx[len(y) // 2 :])
    scores = np.empty(len(y))
    for tr, te in (halves, halves[::-1]):
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-9
        z = (x[tr] - mu) / sd
        cov = np.cov(z.T) + 1e-3 * np.eye(z.shape[1])
        w = np.linalg.solve(cov, z[y[tr] == 1].mean(0) - z[y[tr] == 0].mean(0))
        scores[te] = ((x[te] - mu) / sd) @ w
    return float(auc(scores, y))


@pytest.fixture(scope="module")
def biased_batch() -> tuple[list[np.ndarray], np.ndarray]:
    """Reals: small (144-176 px) images upscaled to 224 and saved at JPEG 70; fakes: large
    (288 px) sharp lossless images; the same kind of content in both."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for _ in range(64):
        side = int(rng.integers(144, 177))
        small = cv2.resize(_texture(rng, 192), (side, side), interpolation=cv2.INTER_AREA)
        images.append(_jpeg(cv2.resize(small, (224, 224), interpolation=cv2.INTER_CUBIC), 70))
        labels.append(0)
        images.append(_texture(rng, 288))
        labels.append(1)
    return images, np.array(labels)


def test_statistics_separate_the_raw_batch_and_not_the_normalised_one(biased_batch):
    images, y = biased_batch
    before = np.array([_stats(im) for im in images])
    assert _cv_auc(before, y) > 0.9

    norm = Normaliser(size=256, seed=0)
    out = [norm(im) for im in images]
    assert {im.shape for im in out} == {(256, 256, 3)}
    after = np.array([_stats(im) for im in out])
    assert np.ptp(after[:, 0]) == 0  # size carries nothing
    assert _cv_auc(after, y) < 0.65
    for k in range(1, after.shape[1]):
        a = auc(after[:, k], y)
        assert max(a, 1 - a) < 0.7, (k, a)


def test_a_weak_normaliser_leaves_the_shortcut(biased_batch):
    """The check above can fail: resizing alone (no downscale, no JPEG) keeps the cue."""
    images, y = biased_batch
    weak = Normaliser(size=256, scale=(1.0, 1.0), quality=(100, 100), seed=0)
    after = np.array([_stats(weak(im)) for im in images])
    assert _cv_auc(after, y) > 0.8


def test_seeded_and_shared_reencode():
    img = _texture(np.random.default_rng(3), 96)
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
    img = _texture(np.random.default_rng(4), 80)[:, :64]
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
