"""How far the Normaliser hides a size/sharpness/codec shortcut, on a rigged synthetic batch.

Reals: 1/f colour textures downscaled to a small side, upscaled (bicubic) to 224 px and saved
at JPEG 70; fakes: the same kind of texture, 288 px, lossless. A linear discriminant on
size/sharpness/codec statistics (side, log Laplacian variance, log share of spectral energy
above 1/4 cycle/pixel, 8x8 blockiness) is cross-fitted (2 folds) and its AUC printed before
and after ``Normaliser`` (default settings and two other ``scale`` ranges). The same batch and
statistics as tests/data/test_normalise.py. Usage::

    OMP_NUM_THREADS=1 uv run python benchmarks/normalise_shortcut.py [--pairs 64]
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from facetrust.data.bias import auc
from facetrust.data.normalise import Normaliser


def texture(rng: np.random.Generator, n: int) -> np.ndarray:
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
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)
    lap = cv2.Laplacian(g, cv2.CV_64F).var()
    power = np.abs(np.fft.fft2(g - g.mean())) ** 2
    fr = np.hypot(np.fft.fftfreq(g.shape[0])[:, None], np.fft.fftfreq(g.shape[1])[None])
    high = power[fr > 0.25].sum() / power.sum()
    col = np.abs(np.diff(g, axis=1)).mean(axis=0)
    edge = np.arange(col.size) % 8 == 7
    return [float(img.shape[0]), np.log(lap + 1e-9), np.log(high + 1e-12),
            col[edge].mean() / (col[~edge].mean() + 1e-9)]  # fmt: skip


def cv_auc(x: np.ndarray, y: np.ndarray, seed: int = 1) -> float:
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


def batch(lo: int, hi: int, pairs: int) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    images, labels = [], []
    for _ in range(pairs):
        side = int(rng.integers(lo, hi + 1))
        small = cv2.resize(texture(rng, 192), (side, side), interpolation=cv2.INTER_AREA)
        images.append(jpeg(cv2.resize(small, (224, 224), interpolation=cv2.INTER_CUBIC), 70))
        images.append(texture(rng, 288))
        labels += [0, 1]
    return images, np.array(labels)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=64)
    args = ap.parse_args()
    scales = {"default (0.3-0.5)": (0.3, 0.5), "0.2-0.4": (0.2, 0.4), "0.5-1.0": (0.5, 1.0)}
    print("reals upscaled from | raw | " + " | ".join(f"scale {s}" for s in scales))
    print("---|---|" + "---|" * len(scales))
    for lo, hi in ((64, 96), (96, 128), (112, 144), (144, 176)):
        images, y = batch(lo, hi, args.pairs)
        normalisers = {k: Normaliser(256, scale=s, seed=0) for k, s in scales.items()}
        cells = [cv_auc(np.array([stats(i) for i in images]), y)]
        for norm in normalisers.values():
            cells.append(cv_auc(np.array([stats(norm(i)) for i in images]), y))
        print(f"{lo}-{hi} px | " + " | ".join(f"{c:.3f}" for c in cells))


if __name__ == "__main__":
    main()
