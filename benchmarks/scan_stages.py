"""Where ``facetrust scan`` spends its CPU, stage by stage, in CPU-seconds per face.

Runs the scan's own stages (``facetrust.scan.stages``: ``probe``, ``Preparer``, ``ScanModel``)
in one process with one thread on ``--n`` images spread over ``../shared/data/manifest.jsonl``
(as ``benchmarks/scan.py`` picks them) and times each part with ``time.process_time`` (CPU
time of this process, which the machine's load barely changes): hashing and sniffing, decoding,
each BlazeFace pass (the whole image, tiles, the padded image with the short- and full-range
models), NMS and the rest of face finding, FaceMesh (verification and landmarks, with its
retries on faces at the border), the aligned crop, the thumbnail, and the model on batches
of ``--batch`` faces. Also prints the faces found, so a change can be checked for the same
detections (``--dump`` writes each file's boxes as JSON).

    OMP_NUM_THREADS=1 FACETRUST_THREADS=1 uv run python benchmarks/scan_stages.py --n 100
    uv run python benchmarks/scan_stages.py --n 100 --runtime torch --model facetrust-default
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from scan import DATA, pick_images  # noqa: E402

CPU: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)


def timed(name, fn):
    """``fn`` with its CPU time added to ``CPU[name]`` (``name`` may be a function of the args)."""

    def wrapper(*args, **kwargs):
        c0 = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            key = name(*args, **kwargs) if callable(name) else name
            CPU[key] += time.process_time() - c0
            CALLS[key] += 1

    return wrapper


class Timed:
    """A callable object (a BlazeFace, the FaceMesh) whose calls are timed; other attributes
    pass through."""

    def __init__(self, obj, name) -> None:
        self._obj = obj
        self._call = timed(name, obj.__call__)

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, attr):
        return getattr(self._obj, attr)


def blaze_pass(variant: str):
    def name(image, window=None):
        h, w = image.shape[:2]
        side = max(h, w) if window is None else window[2]
        if side > 1.5 * max(h, w):
            return f"blazeface {variant}, padded image"
        if side >= max(h, w):
            return f"blazeface {variant}, whole image"
        return f"blazeface {variant}, tiles"

    return name


def mesh_pass(image, face, border="constant"):
    return "facemesh (verify + landmarks)" if border == "constant" else "facemesh retry (border)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--model", default="facetrust-fast")
    ap.add_argument("--runtime", default="onnx")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dump", type=Path, help="write each file's faces (box, score) as JSON")
    args = ap.parse_args()

    from facetrust.config import apply_threads
    from facetrust.scan import stages

    apply_threads(1)
    files = pick_images(DATA / "manifest.jsonl", args.n)
    model = stages.ScanModel(args.model, runtime=args.runtime, batch_size=args.batch)
    prep = stages.Preparer(model.contract, threads=1)
    det = prep.faces
    det._full = Timed(det._full, blaze_pass("full"))
    det._short = Timed(det._short, blaze_pass("short"))
    if det._mesh is not None:
        det._mesh = Timed(det._mesh, mesh_pass)
    prep.aligner = Timed(prep.aligner, "aligned crop")
    stages.read_image = timed("decode", stages.read_image)
    stages.thumbnail = timed("thumbnail (96 px JPEG)", stages.thumbnail)
    find = timed("face finding (all)", det._find)
    det._find = find
    scorer = model.detector.scorer
    model_key = f"model ({model.name}, {model.detector.runtime})"
    model.detector.scorer = timed(model_key, scorer)

    prepared, faces, dump = [], 0, {}
    for path in files:
        info = timed("probe (stat, SHA-256, sniff)", stages.probe)(path)
        p = prep(info)
        prepared.append(p)
        faces += p.n_crops
        dump[str(path.relative_to(DATA))] = [
            [round(float(v), 2) for v in f.box] + [round(float(f.score), 4)] for f in p.faces
        ]
    for i in range(0, len(prepared), args.batch):
        timed("scoring + verdicts (all)", model.score)(prepared[i : i + args.batch])

    parts = [k for k in CPU if k.startswith(("blazeface", "facemesh"))]
    CPU["nms, landmarks, rest of face finding"] = CPU["face finding (all)"] - sum(
        CPU[k] for k in parts
    )
    order = [
        "probe (stat, SHA-256, sniff)",
        "decode",
        *sorted(k for k in CPU if k.startswith("blazeface")),
        *sorted(k for k in CPU if k.startswith("facemesh")),
        "nms, landmarks, rest of face finding",
        "aligned crop",
        "thumbnail (96 px JPEG)",
        model_key,
    ]
    CPU["verdicts, records"] = CPU["scoring + verdicts (all)"] - CPU[model_key]
    order.append("verdicts, records")
    total = sum(CPU[k] for k in order)
    errors = sum(p.error is not None for p in prepared)
    print(f"{len(files)} images ({errors} errors), {faces} faces; model {model.name}, "
          f"runtime {model.detector.runtime}, 1 thread; load average "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")  # fmt: skip
    print("| stage | calls | CPU s | CPU ms / face | share |\n|---|---:|---:|---:|---:|")
    for k in order:
        print(f"| {k} | {CALLS.get(k, '')} | {CPU[k]:.2f} | {1000 * CPU[k] / max(faces, 1):.1f} "
              f"| {100 * CPU[k] / total:.0f} % |")  # fmt: skip
    print(f"| **total** | | {total:.2f} | {1000 * total / max(faces, 1):.1f} | |")
    print(f"faces per CPU-second: {faces / total:.1f}; with face finding and the model on two "
          f"cores: {faces / max(total - CPU[model_key] - CPU['verdicts, records'], 1e-9):.1f} "
          f"(preparing) vs {faces / max(CPU[model_key], 1e-9):.1f} (model)")  # fmt: skip
    if args.dump:
        args.dump.write_text(json.dumps(dump, indent=0, sort_keys=True))
    os._exit(0)  # skip interpreter teardown (LiteRT, ORT)


if __name__ == "__main__":
    main()
