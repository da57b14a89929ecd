"""Face-detection recall, false positives and time on multi-face photos from registry packages.

Photos: the six group photos in the npm package @vladmandic/face-api (demo/) and insightface's
t1.jpg (PyPI sdist). They are fetched with npm / pip into a cache folder, never committed.
Ground truth: benchmarks/groundtruth/group_faces.json (boxes checked by eye).

Usage: python benchmarks/faces_groups.py [--cache ~/.cache/facetrust-bench] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

from facetrust.faces import FaceDetector, box_iou
from facetrust.media import load_image

HERE = Path(__file__).resolve().parent
GT = HERE / "groundtruth" / "group_faces.json"


def _pip() -> list[str]:
    """A pip to download with: the environment's own, else the machine's (uv venvs have none)."""
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode:
        exe = shutil.which("pip3") or shutil.which("pip")
        if exe is None:
            raise SystemExit("pip is needed to download insightface's sdist for t1.jpg")
        return [exe]
    return [sys.executable, "-m", "pip"]


def fetch(cache: Path) -> dict[str, Path]:
    """Download the two packages (once) and return {ground-truth key: image path}."""
    cache.mkdir(parents=True, exist_ok=True)
    npm_dir = cache / "face-api"
    if not (npm_dir / "package" / "demo").is_dir():
        npm_dir.mkdir(exist_ok=True)
        subprocess.run(
            ["npm", "pack", "@vladmandic/face-api@1.7.15"],
            cwd=npm_dir,
            check=True,
            capture_output=True,
        )
        with tarfile.open(next(npm_dir.glob("*.tgz"))) as tf:
            tf.extractall(
                npm_dir,
                members=[m for m in tf if m.name.startswith("package/demo/")],
                filter="data",
            )
    ins_dir = cache / "insightface"
    t1 = ins_dir / "insightface-2.1" / "insightface" / "data" / "images" / "t1.jpg"
    if not t1.is_file():
        ins_dir.mkdir(exist_ok=True)
        subprocess.run(
            [
                *_pip(),
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(ins_dir),
                "insightface==2.1",
            ],
            check=True,
            capture_output=True,
        )
        with tarfile.open(next(ins_dir.glob("insightface-*.tar.gz"))) as tf:
            tf.extractall(
                ins_dir, members=[m for m in tf if m.name.endswith("images/t1.jpg")], filter="data"
            )
    out = {}
    for key in json.loads(GT.read_text())["faces"]:
        pkg, rel = key.split(":", 1)
        out[key] = (npm_dir / "package" / rel) if pkg.startswith("@") else t1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "facetrust-bench")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per image (median kept)")
    ap.add_argument("--iou", type=float, default=0.4, help="IoU for a detection to match")
    args = ap.parse_args()
    gt = json.loads(GT.read_text())["faces"]
    paths = fetch(args.cache)
    det = FaceDetector()
    tot_gt = tot_tp = tot_fp = 0
    times = []
    print(f"{'image':42s} {'size':>11s} {'faces':>5s} {'found':>5s} {'FP':>3s} {'ms':>7s}")
    for key, boxes in gt.items():
        image = load_image(paths[key])
        det(image)  # warm-up
        runs = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            faces = det(image)
            runs.append(time.perf_counter() - t0)
        ms = 1000 * float(np.median(runs))
        times.append(ms)
        found = np.array([f.box for f in faces]).reshape(-1, 4)
        iou = box_iou(found, np.array(boxes)) if len(found) else np.zeros((0, len(boxes)))
        tp = int((iou.max(axis=0) >= args.iou).sum()) if len(found) else 0
        fp = int((iou.max(axis=1) < args.iou).sum()) if len(found) else 0
        tot_gt, tot_tp, tot_fp = tot_gt + len(boxes), tot_tp + tp, tot_fp + fp
        size = f"{image.shape[1]}x{image.shape[0]}"
        print(f"{key:42s} {size:>11s} {len(boxes):5d} {tp:5d} {fp:3d} {ms:7.1f}")
    print(
        f"recall {tot_tp}/{tot_gt} = {tot_tp / tot_gt:.1%}; false positives {tot_fp}; "
        f"median {np.median(times):.0f} ms per image (detection + 468 landmarks + verification)"
    )


if __name__ == "__main__":
    main()
