"""CPU time of a ``facetrust scan`` run per process: the scanning process (hashing, the model,
the store, and the files it prepares itself) and the worker(s) (decoding, face finding), in
CPU ms per face, with the files the scanning process prepared. CPU time, so it says how the
work is split even on a loaded machine; the wall-clock rate is printed too.

    OMP_NUM_THREADS=1 uv run python benchmarks/scan_cpu_split.py --n 300
    uv run python benchmarks/scan_cpu_split.py --n 300 --runtime torch --threads 4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from scan import DATA, pick_images  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--model", default="facetrust-fast")
    ap.add_argument("--runtime", default="onnx")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()

    from facetrust.scan.scanner import Scanner

    tmp = Path(tempfile.mkdtemp())
    files = tmp / "files.jsonl"
    picked = pick_images(DATA / "manifest.jsonl", args.n)
    files.write_text("".join(json.dumps({"path": str(p)}) + "\n" for p in picked))
    scanner = Scanner(tmp / "s.db", model=args.model, threads=args.threads, runtime=args.runtime,
                      batch_size=args.batch, progress=False)  # fmt: skip
    r = scanner.run([str(files)])
    print(r.text())
    n = max(r.faces, 1)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"{r.faces} faces, {scanner.workers} worker(s); CPU ms / face: scanning process "
          f"{1000 * r.cpu_seconds / n:.1f}, workers {1000 * r.worker_cpu_seconds / n:.1f}, all "
          f"{1000 * (r.cpu_seconds + r.worker_cpu_seconds) / n:.1f}; files prepared by the "
          f"scanning process: {getattr(r, 'prepared_here', 'n/a')}; wall {r.seconds:.1f} s, "
          f"{r.faces_per_s:.1f} faces/s; load average {load}")  # fmt: skip


if __name__ == "__main__":
    main()
