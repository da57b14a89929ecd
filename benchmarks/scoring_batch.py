"""What micro-batching buys the scoring core: CPU per face at batch 1, 8 and 32, per runtime.

The server's micro-batcher turns N concurrent one-face requests into one scorer call on N
faces; this measures the scorer alone on the same 32 crops of the sample image's face (shifted
a little so they differ), as CPU time per face (process time: robust to a loaded machine) and
wall time per face, for each model and runtime.

    python benchmarks/scoring_batch.py
    python benchmarks/scoring_batch.py --models facetrust-fast --runtimes torch onnx
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def crops_of_sample(n: int, side: int) -> list[np.ndarray]:
    from facetrust.faces.find import face_detector_for
    from facetrust.media import load_image

    image = load_image(ROOT / "examples" / "astronaut.jpg")
    from facetrust.config import Settings

    faces = face_detector_for(Settings())(image)
    x0, y0, x1, y1 = (int(v) for v in faces[0].box)
    import cv2

    out = []
    for i in range(n):
        dx, dy = (i % 5) - 2, (i // 5 % 5) - 2
        c = image[max(0, y0 + dy) : y1 + dy, max(0, x0 + dx) : x1 + dx]
        out.append(np.ascontiguousarray(cv2.resize(c, (side, side))))
    return out


def main() -> None:
    from facetrust.config import apply_threads, default_threads
    from facetrust.detect.scoring import crop_contract, load_scorer
    from facetrust.models.checkpoint import read_checkpoint_meta
    from facetrust.models.zoo import resolve_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["facetrust-fast", "facetrust-default"])
    ap.add_argument("--runtimes", nargs="+", default=["torch", "onnx"])
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    threads = args.threads or default_threads()
    apply_threads(threads)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"threads {threads}; load average {load}")
    print(f"{'model':18s} {'runtime':7s} {'batch':>5s} {'CPU ms/face':>11s} {'wall ms/face':>12s}")
    for model in args.models:
        path = resolve_model(model)
        crops = crops_of_sample(32, crop_contract(read_checkpoint_meta(path)).size)
        for runtime in args.runtimes:
            _, _, scorer = load_scorer(path, runtime=runtime, device="cpu", threads=threads)
            scorer.load()
            scorer(crops[:2])  # warm-up
            for batch in (1, 8, 32):
                n = 32 if batch > 1 else 8
                c0, t0 = time.process_time(), time.perf_counter()
                for i in range(0, n, batch):
                    scorer(crops[i : i + batch])
                cpu = (time.process_time() - c0) / n * 1000
                wall = (time.perf_counter() - t0) / n * 1000
                print(f"{model:18s} {runtime:7s} {batch:5d} {cpu:11.1f} {wall:12.1f}", flush=True)


if __name__ == "__main__":
    main()
