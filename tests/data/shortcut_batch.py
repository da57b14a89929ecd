"""A synthetic batch with the resolution/codec shortcut of the shared data, and the statistics
a classifier would use to find it: shared by tests/data/test_normalise.py and
benchmarks/normalise_shortcut.py."""

from __future__ import annotations

import cv2
import numpy as np

from facetrust.data.bias import auc


def texture(rng: np.random.Generator, n: int) -> np.ndarray:
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


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def stats(img: np.ndarray) -> list[float]:
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


def cv_auc(x: np.ndarray, y: np.ndarray, seed: int = 1) -> float:
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


def biased_batch(
    lo: int = 144, hi: int = 176, pairs: int = 64
) -> tuple[list[np.ndarray], np.ndarray]:
    """Reals: small (``lo``-``hi`` px) images upscaled to 224 and saved at JPEG 70; fakes:
    large (288 px) sharp lossless images; the same kind of content in both."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for _ in range(pairs):
        side = int(rng.integers(lo, hi + 1))
        small = cv2.resize(texture(rng, 192), (side, side), interpolation=cv2.INTER_AREA)
        images.append(jpeg(cv2.resize(small, (224, 224), interpolation=cv2.INTER_CUBIC), 70))
        labels.append(0)
        images.append(texture(rng, 288))
        labels.append(1)
    return images, np.array(labels)
