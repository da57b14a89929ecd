"""The Ray engine against the local engine of ``facetrust scan``, on the same files, side by side
in one run: the overhead of Ray at the same CPUs and how it scales from 1 to 2 workers.

Files: the inputs of ``benchmarks/scan.py`` (``--n`` images spread over every source of
``../shared/data/manifest.jsonl`` plus its sample video), as a manifest. Configurations, each
into a fresh store:

- local engine, 1 CPU (``--threads 1``: no worker process) and 2 CPUs (1 worker + scoring);
- Ray engine on a private local Ray of 1 and 2 CPUs (``--workers 1|2``).

``start s`` is Ray's start-up (``ray.init``, once per configuration), ``load s`` the model load
in the driver; ``scan s`` the run itself (for Ray: the pipeline, its worker processes and the
model loaded in the scoring actor). ``overhead`` is the Ray engine's scan time over the local
engine's at the same CPUs; ``end to end`` adds start-up and load. ``max |dp|`` compares each
file's probability with the local engine's at 2 CPUs.

    OMP_NUM_THREADS=1 FACETRUST_THREADS=1 uv run python benchmarks/scan_ray.py --n 200
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _scan_benchmark():
    """benchmarks/scan.py (the same inputs as the local engine's benchmark)."""
    spec = importlib.util.spec_from_file_location("scan_benchmark", ROOT / "benchmarks" / "scan.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _probs(db: Path) -> dict[str, float | None]:
    from facetrust.scan.store import ResultsStore

    with ResultsStore(db) as store:
        return {r["path"]: r["fake_probability"] for r in store.iter_files()}


def run_local(manifest: Path, db: Path, model: str, cpus: int, batch: int) -> dict:
    from facetrust.scan.scanner import Scanner

    t0 = time.perf_counter()
    scanner = Scanner(db, model=model, threads=cpus, batch_size=batch, progress=False)
    load = time.perf_counter() - t0
    s = scanner.run([manifest])
    return dict(engine="local", cpus=cpus, start=0.0, load=load, summary=s, probs=_probs(db))


def run_ray(manifest: Path, db: Path, model: str, cpus: int, batch: int) -> dict:
    from facetrust.scan.ray_engine import RayScanner, ray_session

    t0 = time.perf_counter()
    with ray_session(None, cpus=cpus):
        start = time.perf_counter() - t0
        t0 = time.perf_counter()
        scanner = RayScanner(db, model=model, workers=cpus, batch_size=batch, progress=False)
        load = time.perf_counter() - t0
        s = scanner.run([manifest])
    return dict(engine="ray", cpus=cpus, start=start, load=load, summary=s, probs=_probs(db))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="images from the manifest")
    ap.add_argument("--manifest", type=Path, default=DATA / "manifest.jsonl")
    ap.add_argument("--model", default="facetrust-fast")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--no-video", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    bench = _scan_benchmark()
    with tempfile.TemporaryDirectory(prefix="scan-ray-bench-") as tmp:
        tmp = Path(tmp)
        files = bench.pick_images(args.manifest, args.n)
        if not args.no_video:
            files.append(bench.make_video(tmp / "sample.mp4"))
        manifest = tmp / "files.jsonl"
        manifest.write_text("".join(json.dumps({"path": str(f)}) + "\n" for f in files))
        print(
            f"{len(files)} files ({args.n} images + {0 if args.no_video else 1} video), "
            f"model {args.model}, batch {args.batch_size}",
            flush=True,
        )
        runs = []
        for engine, cpus in (("local", 1), ("local", 2), ("ray", 1), ("ray", 2)):
            fn = run_local if engine == "local" else run_ray
            db = tmp / f"{engine}{cpus}.db"
            r = fn(manifest, db, args.model, cpus, args.batch_size)
            s = r["summary"]
            print(f"  {engine} {cpus} CPU: {s.seconds:.1f} s, {s.faces} faces", flush=True)
            runs.append(r)

    ref = next(r for r in runs if (r["engine"], r["cpus"]) == ("local", 2))["probs"]
    local_s = {r["cpus"]: r["summary"].seconds for r in runs if r["engine"] == "local"}
    header = (
        f"{'engine':<8}{'CPUs':>5}{'start s':>9}{'load s':>8}{'scan s':>8}{'files/s':>9}"
        f"{'faces/s':>9}{'overhead':>10}{'end to end':>12}{'max |dp|':>10}"
    )
    print(header)
    out = []
    for r in runs:
        s = r["summary"]
        total = r["start"] + r["load"] + s.seconds
        local_total = local_s[r["cpus"]] + next(
            x["load"] for x in runs if (x["engine"], x["cpus"]) == ("local", r["cpus"])
        )
        diffs = [
            abs(p - ref[k])
            for k, p in r["probs"].items()
            if p is not None and ref.get(k) is not None
        ]
        same = sorted(r["probs"]) == sorted(ref) and all(
            (p is None) == (ref[k] is None) for k, p in r["probs"].items()
        )
        row = {
            "engine": r["engine"],
            "cpus": r["cpus"],
            "start_s": round(r["start"], 2),
            "load_s": round(r["load"], 2),
            "scan_s": round(s.seconds, 2),
            "files": s.recorded,
            "faces": s.faces,
            "files_per_s": round(s.files_per_s, 2),
            "faces_per_s": round(s.faces_per_s, 2),
            "overhead": round(s.seconds / local_s[r["cpus"]], 2),
            "end_to_end": round(total / local_total, 2),
            "max_abs_dp": max(diffs, default=0.0),
            "same_files_and_statuses": same,
        }
        out.append(row)
        print(
            f"{r['engine']:<8}{r['cpus']:>5}{r['start']:>9.1f}{r['load']:>8.1f}"
            f"{s.seconds:>8.1f}{s.files_per_s:>9.2f}{s.faces_per_s:>9.2f}"
            f"{row['overhead']:>9.2f}x{row['end_to_end']:>11.2f}x{row['max_abs_dp']:>10.1e}"
            + ("" if same else "  (different files or statuses!)")
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
