"""CLIP expert time per face: class tokens vs class + mean patch tokens with L2 (the session-18
default's pooling), interleaved in one run so a busy or drifting machine affects both alike.

  python benchmarks/clip_pool_speed.py [--rounds 5] [--threads 2]

Random 256 x 256 crops, one face per call (as `facetrust detect` meets them); prints the median
and 10th percentile of each pooling.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from facetrust.config import apply_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    apply_threads(args.threads)
    from facetrust.detect.experts import ClipExpert

    experts = {"cls": ClipExpert(pool="cls"), "cls+mean, L2": ClipExpert(pool="cls+mean", l2=True)}
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(8)]
    for e in experts.values():  # load the tower, warm up
        e.features(crops[:1])
    times: dict[str, list[float]] = {n: [] for n in experts}
    for r in range(args.rounds):
        order = list(experts) if r % 2 == 0 else list(reversed(experts))
        for crop in crops:
            for name in order:
                t0 = time.perf_counter()
                experts[name].features([crop])
                times[name].append(time.perf_counter() - t0)
    for name, v in times.items():
        print(
            f"CLIP expert, {name:13s} median {1000 * np.median(v):.1f} ms per face, "
            f"p10 {1000 * np.percentile(v, 10):.1f} ms ({len(v)} calls, {args.threads} threads)"
        )


if __name__ == "__main__":
    main()
