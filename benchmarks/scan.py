"""Throughput of ``facetrust scan`` (local engine) against the ``Detector`` run file by file (what
``facetrust detect`` does), side by side in one run, on the same files and the same threads.

Files: ``--n`` images spread evenly over ``../shared/data/manifest.jsonl`` (every source) plus a
sample video made from ``examples/astronaut.jpg`` (the repository ships no video): a face
drifting across 160 frames at 10 fps, of which 16 are sampled, as ``detect`` does. Each
configuration scans into a fresh store. Rates count the run itself; loading the model is shown
apart (``load s``). ``faces`` counts the faces scored (a video's faces in every sampled frame).
The Detector runs with provenance off, so both do the same work (``facetrust detect`` also
reads C2PA/watermark metadata, which makes it slower still). ``max |dp|`` checks that both give
the same probabilities.

The machine this runs on may be shared: wall-clock rates then measure the share of the CPU the
run got. ``CPU s`` is the CPU time spent (scan: scanning process plus workers), and ``unloaded
faces/s`` is faces divided by the CPU time of the slowest stage (the Detector: its one process;
scan: the scanning process or the workers, whichever spent more): the rate each configuration
would reach with a free core per process, derived from CPU time, not measured.

    OMP_NUM_THREADS=1 uv run python benchmarks/scan.py                 # 500 images, both models
    uv run python benchmarks/scan.py --n 100 --models facetrust-fast --runtimes torch onnx
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SAMPLE = ROOT / "examples" / "astronaut.jpg"


def pick_images(manifest: Path, n: int) -> list[Path]:
    """``n`` image paths spread evenly over the manifest (every source is represented)."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    step = len(rows) / n
    return [manifest.parent / rows[int(i * step)]["path"] for i in range(min(n, len(rows)))]


def make_video(path: Path, frames: int = 160, fps: int = 10) -> Path:
    """A 480x360 MPEG-4 video: the sample photo's face drifting to the right."""
    import av
    from PIL import Image

    face = Image.open(SAMPLE).convert("RGB").crop((120, 20, 330, 260)).resize((150, 171))
    face = np.asarray(face)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 480, 360, "yuv420p"
        for i in range(frames):
            canvas = np.full((360, 480, 3), 90, np.uint8)
            x = 20 + (280 * i) // frames
            canvas[90:261, x : x + 150] = face
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def runtime_kwargs(runtime: str) -> dict:
    from facetrust.detect import Detector

    if "runtime" in inspect.signature(Detector.__init__).parameters:
        return {"runtime": runtime}
    if runtime != "torch":
        raise SystemExit(f"this facetrust has no --runtime {runtime}")
    return {}


def run_scan(files_manifest: Path, db: Path, model: str, runtime: str, threads: int, batch: int):
    from facetrust.scan.scanner import Scanner
    from facetrust.scan.store import ResultsStore

    t0 = time.perf_counter()
    scanner = Scanner(
        db,
        model=model,
        threads=threads,
        batch_size=batch,
        progress=False,
        **runtime_kwargs(runtime),
    )
    load = time.perf_counter() - t0
    summary = scanner.run([files_manifest])
    with ResultsStore(db) as store:
        probs = {r["path"]: r["fake_probability"] for r in store.iter_files()}
    return {
        "engine": f"scan ({scanner.workers}w+{scanner.model_threads} thr)",
        "files": summary.recorded,
        "faces": summary.faces,
        "errors": summary.error,
        "load_s": load,
        "seconds": summary.seconds,
        # the pipeline's slower stage bounds its rate once each has a core of its own
        "cpu_s": summary.cpu_seconds + summary.worker_cpu_seconds,
        "bottleneck_cpu_s": max(summary.cpu_seconds, summary.worker_cpu_seconds),
        "probs": probs,
    }


def run_detect(files: list[Path], model: str, runtime: str, threads: int):
    import torch

    from facetrust.config import Settings
    from facetrust.detect import Detector
    from facetrust.errors import FacetrustError

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    settings = Settings(threads=threads)
    det = Detector(model, provenance=False, settings=settings, **runtime_kwargs(runtime))
    load = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    faces = errors = 0
    probs = {}
    for f in files:
        try:
            r = det(f)
        except FacetrustError:
            errors += 1
            probs[os.path.abspath(f)] = None
            continue
        if r.kind == "video":
            faces += sum(fp.num_faces for fp in r.frame_predictions or [])
        else:
            faces += len(r.faces)
        probs[os.path.abspath(f)] = r.fake_probability
    return {
        "engine": f"Detector ({threads} thr)",
        "files": len(files),
        "faces": faces,
        "errors": errors,
        "load_s": load,
        "seconds": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
        "bottleneck_cpu_s": time.process_time() - c0,
        "probs": probs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="images from the manifest")
    ap.add_argument("--manifest", type=Path, default=DATA / "manifest.jsonl")
    ap.add_argument("--models", nargs="+", default=["facetrust-fast", "facetrust-default"])
    ap.add_argument("--runtimes", nargs="+", default=["torch"])
    ap.add_argument("--threads", type=int, default=None, help="default: the cores available")
    ap.add_argument(
        "--detect-threads",
        type=int,
        nargs="+",
        default=[1],
        help="torch/face-model threads of the file-by-file Detector runs (default 1: on a loaded "
        "2-core machine 2 threads oversubscribe and are far slower; facetrust detect's default "
        "is the cores available)",
    )
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--no-video", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    from facetrust.config import default_threads

    threads = args.threads or int(os.environ.get("FACETRUST_THREADS") or default_threads())
    tmp = Path(tempfile.mkdtemp(prefix="facetrust-scan-bench-"))
    files = pick_images(args.manifest, args.n)
    if not args.no_video:
        files.append(make_video(tmp / "sample.mp4"))
    listing = tmp / "files.jsonl"
    listing.write_text("".join(json.dumps({"path": str(f)}) + "\n" for f in files))
    print(
        f"{len(files)} files ({args.n} images of {args.manifest}"
        + ("" if args.no_video else " + a 16-frame sample of a 160-frame video")
        + f"), {threads} threads, batch {args.batch_size}, load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg()),
        flush=True,
    )
    head = (
        f"{'model':<18} {'runtime':<8} {'engine':<24} {'files':>5} {'faces':>5} {'load s':>7} "
        f"{'run s':>7} {'files/s':>8} {'faces/s':>8} {'vs detect':>9} {'max |dp|':>9} "
        f"{'CPU s':>7} {'faces/CPU-s':>11} {'unloaded faces/s':>16}"
    )
    print(head, flush=True)
    results = []
    for model in args.models:
        for runtime in args.runtimes:
            dets = [run_detect(files, model, runtime, t) for t in args.detect_threads]
            db = tmp / f"{model}-{runtime}.db"
            scan = run_scan(listing, db, model, runtime, threads, args.batch_size)
            det = max(dets, key=lambda r: r["files"] / r["seconds"])  # the fastest baseline
            same = [
                abs(scan["probs"][p] - q)
                for p, q in det["probs"].items()
                if q is not None and scan["probs"].get(p) is not None
            ]
            for r in (*dets, scan):
                r.update(model=model, runtime=runtime)
                r["files_per_s"] = r["files"] / r["seconds"]
                r["faces_per_s"] = r["faces"] / r["seconds"]
                r["faces_per_cpu_s"] = r["faces"] / r["cpu_s"]
                r["unloaded_faces_per_s"] = r["faces"] / r["bottleneck_cpu_s"]
            scan["speedup"] = scan["faces_per_s"] / det["faces_per_s"]
            scan["max_abs_dp"] = max(same) if same else None
            for r in (*dets, scan):
                sp = f"{r['speedup']:.2f}x" if "speedup" in r else "1.00x"
                dp = f"{r['max_abs_dp']:.1e}" if r.get("max_abs_dp") is not None else ""
                print(
                    f"{model:<18} {runtime:<8} {r['engine']:<24} {r['files']:>5} {r['faces']:>5} "
                    f"{r['load_s']:>7.1f} {r['seconds']:>7.1f} {r['files_per_s']:>8.2f} "
                    f"{r['faces_per_s']:>8.2f} {sp:>9} {dp:>9} {r['cpu_s']:>7.1f} "
                    f"{r['faces_per_cpu_s']:>11.2f} {r['unloaded_faces_per_s']:>16.2f}",
                    flush=True,
                )
                results.append({k: v for k, v in r.items() if k != "probs"})
    print("load average after: " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
