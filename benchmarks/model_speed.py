"""Time per face of a detector checkpoint (model alone, and the whole image pipeline).

Usage: python benchmarks/model_speed.py [--model NAME_OR_PATH] [--threads 2] [--runs 50]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from facetrust.models import load_checkpoint
from facetrust.models.preprocess import Preprocess
from facetrust.models.zoo import resolve_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = resolve_model(args.model)
    model, meta = load_checkpoint(path, device="cpu")
    s = meta.input_size
    # one crop as the scoring core feeds it (Preprocess: resized, normalised, channels-last)
    crop = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    x = Preprocess.from_meta(meta)([crop])
    with torch.inference_mode():
        for _ in range(5):
            model(x)
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    print(
        f"CNN of {args.model or meta.name or path.stem} ({meta.arch}, {s}px), "
        f"{args.threads} threads: "
        f"median {1000 * np.median(times):.1f} ms per face, "
        f"p90 {1000 * np.percentile(times, 90):.1f} ms"
    )

    from facetrust.detect import Detector

    det = Detector(path, device="cpu")
    if det.experts is not None:  # a fused model: the CNN plus its frozen experts, per face
        side = det.contract.size
        crop = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
        for _ in range(3):
            det.score_crops([crop])
        times = []
        for _ in range(max(10, args.runs // 3)):
            t0 = time.perf_counter()
            det.score_crops([crop])
            times.append(time.perf_counter() - t0)
        print(
            f"fused model ({' + '.join(det.experts.inputs)}), {args.threads} threads: "
            f"median {1000 * np.median(times):.1f} ms per face, "
            f"p90 {1000 * np.percentile(times, 90):.1f} ms"
        )
    det(EXAMPLE)
    runs = []
    for _ in range(10):
        t0 = time.perf_counter()
        det(EXAMPLE)
        runs.append(time.perf_counter() - t0)
    print(
        f"whole pipeline on examples/astronaut.jpg (decode, faces, landmarks, crop, model): "
        f"median {1000 * np.median(runs):.0f} ms"
    )


if __name__ == "__main__":
    main()
