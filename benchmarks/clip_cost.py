"""Can the fused default reach 15 faces/s on 2 cores? CPU-seconds per face of its scoring, by
runtime: torch (CLIP ViT-B/16 under bfloat16 autocast where the CPU has it), ONNX Runtime
float32 (the cached export) and ONNX Runtime INT8 (``facetrust export --int8``, made here in a
temporary folder), one thread, on ``--n`` aligned face crops of ``../shared/data``.

Prints, per runtime: the whole scorer per face (CNN + CLIP + frequency + fusion: what a scan's
model process spends), the CLIP expert alone where it can be run alone (torch), and the
arithmetic bound ``faces/s <= 2 / CPU-s per face`` for two cores doing nothing but scoring,
then with face finding added (``--prep-ms``, from ``benchmarks/scan_stages.py``). CPU time
(``time.process_time``), so a loaded machine changes it little.

    OMP_NUM_THREADS=1 FACETRUST_THREADS=1 uv run python benchmarks/clip_cost.py --n 24
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from scan import DATA, pick_images  # noqa: E402


def per_face(fn, crops, rounds: int) -> float:
    """Median CPU seconds per face of ``fn(crops)`` over ``rounds`` calls (one warm-up)."""
    fn(crops[:2])
    out = []
    for _ in range(rounds):
        c0 = time.process_time()
        fn(crops)
        out.append((time.process_time() - c0) / len(crops))
    return sorted(out)[len(out) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24, help="face crops")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default="facetrust-default")
    ap.add_argument("--prep-ms", type=float, default=17.5, help="face finding, CPU ms per face")
    ap.add_argument("--no-int8", action="store_true")
    args = ap.parse_args()

    import numpy as np

    from facetrust.config import apply_threads
    from facetrust.detect.onnx_export import export_onnx, onnx_cache_path
    from facetrust.detect.onnx_runtime import OnnxFaceScorer
    from facetrust.detect.pipeline import Detector
    from facetrust.models.zoo import resolve_model
    from facetrust.scan import stages

    apply_threads(1)
    torch_det = Detector(args.model, runtime="torch", provenance=False, batch_size=32)
    prep = stages.Preparer(torch_det.contract, threads=1)
    crops: list = []
    for path in pick_images(DATA / "manifest.jsonl", 4 * args.n):
        crops += prep(stages.probe(path)).crops()
        if len(crops) >= args.n:
            break
    crops = crops[: args.n]
    rows = []
    scorer = torch_det.scorer
    scorer.load()
    rows.append(("torch (bf16 autocast)", "whole scorer", per_face(scorer, crops, args.rounds)))
    clip = scorer.experts.experts["clip"]
    rows.append(("torch (bf16 autocast)", "CLIP expert", per_face(clip, crops, args.rounds)))
    ref = scorer(crops).probability

    cached = onnx_cache_path(resolve_model(args.model))
    if not cached.is_file():
        export_onnx(args.model, cached, external_data=True)
    onnx_files = [("ONNX Runtime fp32", cached)]
    tmp = Path(tempfile.mkdtemp())
    if not args.no_int8:
        c0 = time.process_time()
        export_onnx(args.model, tmp / "int8.onnx", int8=True, external_data=True)
        print(f"(int8 export: {time.process_time() - c0:.0f} CPU s)", flush=True)
        onnx_files.append(("ONNX Runtime INT8", tmp / "int8.onnx"))
    diffs = {}
    for name, path in onnx_files:
        s = OnnxFaceScorer(path, threads=1, batch_size=32)
        s.load()
        for run_batch in (1, 32):
            s.run_batch = run_batch
            cost = per_face(s, crops, args.rounds)
            rows.append((name, f"whole scorer, {run_batch} per run", cost))
        diffs[name] = float(np.abs(s(crops).probability - ref).max())

    fast = OnnxFaceScorer(onnx_cache_path(resolve_model("facetrust-fast")), threads=1)
    cnn = per_face(fast, crops, args.rounds)
    print(f"{len(crops)} crops, 1 thread, model {args.model}; load average "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")  # fmt: skip
    print("| runtime | what | CPU s / face | faces/s bound, scoring only (2 / CPU s) | "
          f"+ face finding ({args.prep_ms:g} ms) |")  # fmt: skip
    print("|---|---|---:|---:|---:|")
    for runtime, what, s in rows:
        bound = f"{2 / s:.1f}"
        full = f"{2 / (s + args.prep_ms / 1000):.1f}" if what.startswith("whole") else ""
        print(f"| {runtime} | {what} | {s:.3f} | {bound} | {full} |")
    print(f"| ONNX Runtime fp32 | facetrust-fast CNN alone (reference) | {cnn:.4f} | | |")
    for name, d in diffs.items():
        print(f"max |probability - torch|: {name} {d:.1e}")
    os._exit(0)


if __name__ == "__main__":
    main()
