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
import importlib.util
from pathlib import Path

import numpy as np

from facetrust.data.normalise import Normaliser


def _batch_module():
    """The synthetic batch and statistics the test uses (tests/data/shortcut_batch.py)."""
    path = Path(__file__).resolve().parent.parent / "tests" / "data" / "shortcut_batch.py"
    spec = importlib.util.spec_from_file_location("shortcut_batch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=64)
    args = ap.parse_args()
    sb = _batch_module()
    scales = {"default (0.3-0.5)": (0.3, 0.5), "0.2-0.4": (0.2, 0.4), "0.5-1.0": (0.5, 1.0)}
    print("reals upscaled from | raw | " + " | ".join(f"scale {s}" for s in scales))
    print("---|---|" + "---|" * len(scales))
    for lo, hi in ((64, 96), (96, 128), (112, 144), (144, 176)):
        images, y = sb.biased_batch(lo, hi, args.pairs)
        normalisers = {k: Normaliser(256, scale=s, seed=0) for k, s in scales.items()}
        cells = [sb.cv_auc(np.array([sb.stats(i) for i in images]), y)]
        for norm in normalisers.values():
            cells.append(sb.cv_auc(np.array([sb.stats(norm(i)) for i in images]), y))
        print(f"{lo}-{hi} px | " + " | ".join(f"{c:.3f}" for c in cells))


if __name__ == "__main__":
    main()
