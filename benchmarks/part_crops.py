"""Zoomed eye and mouth crops read by the CLIP expert: evidence that transfers to new kinds?

  uv run python benchmarks/part_crops.py [--variants whole,parts,whole+parts] \
      [--in-dist configs/long.yaml] [--c 0.003] [--out JSON]

Every prepared face's aligned 256 px crop gives three squares around its FaceMesh landmarks:
each eye (1.8 times the distance between its corners) and the mouth (1.7 times the distance
between its corners, centred on the corners and the inner lips), each enlarged to 224 px and
read as the default's CLIP expert reads a face (class + mean patch tokens of 12 blocks, L2 per
block, the clean view). Their features are cached by facetrust's own extraction, a folder per
part (``<--parts-dir>-<part>``; ~9 min a part for the 12,168 faces of the shared data on 2
cores, resumed if cut). Then, for each leave-one-kind-out fold of ``loso.py``, a linear head
(``facetrust fuse``'s fitting at a fixed C) on the whole face (the cache of
``clip_probe_loso.py``, ``--features``), on the three parts, or on both, scored on the held-out
sources (AUC with its 95 % interval, ECE of the head's own probability); ``--in-dist CONFIG``
fits each on that config's train split and scores its val split instead. Last a training-free
check: how unlike the two eyes' class tokens are (1 - cosine per block; the eyes of a generated
face need not match), its AUC per fold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from facetrust.config import apply_threads
from facetrust.data.manifest import read_crop, read_manifest, resolve
from facetrust.detect.calibration import sigmoid
from facetrust.detect.experts import ClipExpert
from facetrust.train.features import extract_features, load_features
from facetrust.train.fusion import fit_linear_head
from facetrust.train.metrics import roc_auc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import FOLDS, by_fake_source, fold_figures  # noqa: E402

# FaceMesh landmarks: (corner, corner, extra centre points), box side / corner distance
PARTS = {
    "leye": ((33, 133), (), 1.8),
    "reye": ((362, 263), (), 1.8),
    "mouth": ((61, 291), (13, 14), 1.7),
}


def part_crop(img: np.ndarray, landmarks: np.ndarray, part: str) -> np.ndarray:
    """The square of ``img`` around ``part`` (a key of :data:`PARTS`), borders reflected where
    it leaves the crop."""
    (a, b), extra, scale = PARTS[part]
    pts = landmarks[[a, b, *extra]].astype(np.float32)
    centre = pts.mean(0)
    exact = max(24.0, scale * float(np.linalg.norm(pts[0] - pts[1])))
    side = round(exact)
    x0, y0 = (round(float(v) - exact / 2) for v in centre)
    big = cv2.copyMakeBorder(img, side, side, side, side, cv2.BORDER_REFLECT)
    return big[y0 + side : y0 + 2 * side, x0 + side : x0 + 2 * side]


def part_features(rows, manifest: Path, folder: str) -> dict[str, np.ndarray]:
    """Each part's CLIP features of ``rows`` (float16, in row order), extracted on first use."""
    expert = ClipExpert(pool="cls+mean", l2=True)
    out = {}
    for part in PARTS:

        def make(row, part=part):
            lm = np.load(resolve(manifest, row.landmarks)).astype(np.float32)
            return part_crop(read_crop(manifest, row.crop), lm, part)

        table = extract_features(
            rows,
            manifest,
            Path(f"{folder}-{part}"),
            [expert],
            make=make,
            # as JSON reads it back (lists, not tuples): the folder's identity is compared so
            about=json.loads(json.dumps({"part": part, "box": PARTS[part]})),
            views=("clean",),
        )
        out[part] = table.arrays["e0_clean"][table.rows(rows)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--variants", default="whole,parts,whole+parts")
    ap.add_argument("--c", type=float, default=0.003, help="the heads' C (the default's)")
    ap.add_argument("--in-dist", default="", help="a config: fit on its train split, score val")
    ap.add_argument("--manifest", default="data/shared.jsonl")
    ap.add_argument("--features", default="data/features-shared", help="the whole-face cache")
    ap.add_argument("--parts-dir", default="data/features-part")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    if not variants or set(variants) - {"whole", "parts", "whole+parts"}:
        ap.error("--variants: whole, parts and/or whole+parts")
    apply_threads(2)
    manifest = Path(args.manifest)
    rows = [r for r in read_manifest(manifest) if r.crop and r.landmarks]
    y = np.array([r.y for r in rows])
    src = np.array([r.source for r in rows])
    videos = np.array([r.group("video") for r in rows])
    parts = part_features(rows, manifest, args.parts_dir)
    whole = None  # the whole-face cache (~1 GB), read only where a variant needs it
    if any(v != "parts" for v in variants):
        table = load_features(Path(args.features))
        whole = table.get(ClipExpert(pool="cls+mean", l2=True), "clean", table.rows(rows))
    results: dict = {"c": args.c, "boxes": PARTS}  # "parts" names a variant

    def matrix(variant: str) -> np.ndarray:
        pieces = ([whole] if variant != "parts" else []) + (
            list(parts.values()) if variant != "whole" else []
        )
        return np.concatenate(pieces, 1, dtype=np.float32)

    def fit_score(x, train, test):
        head, _ = fit_linear_head(x[train], y[train], src[train], (args.c,))
        return sigmoid(head(x[test]))

    if args.in_dist:
        from facetrust.train.build import select_rows
        from facetrust.train.config import load_config

        row_of = {r.crop: i for i, r in enumerate(rows)}
        splits = select_rows(load_config(args.in_dist))
        tr, va = (np.array([row_of[r.crop] for r in splits[s]]) for s in ("train", "val"))
    for variant in variants:
        x = matrix(variant)
        res = results[variant] = {}
        if args.in_dist:
            p = fit_score(x, tr, va)
            res["in_dist"] = {"auc": round(roc_auc(y[va], p), 4), "n": len(va)}
            print(f"{variant}: in-distribution AUC {res['in_dist']['auc']:.4f}", flush=True)
            res["in_dist"]["by_fake_source"] = by_fake_source(y[va], src[va], p)
            continue
        for fold, held in FOLDS.items():
            test = np.isin(src, held)
            p = fit_score(x, np.flatnonzero(~test), np.flatnonzero(test))
            res[fold] = fold_figures(y[test], p, videos[test])
            f = res[fold]
            print(
                f"{variant} {fold}: AUC {f['auc']:.3f} {f['auc_ci']} ECE {f['ece']:.3f}", flush=True
            )
        aucs = [res[f]["auc"] for f in FOLDS]
        res["mean"], res["worst"] = round(float(np.mean(aucs)), 4), min(aucs)
        print(f"{variant}: mean {res['mean']:.3f} worst {res['worst']:.3f}", flush=True)
        del x
    # training-free: the two eyes' class tokens unlike (1 - cosine), per block, per fold
    cls = [
        parts[e].reshape(len(rows), 12, 2, 768)[:, :, 0].astype(np.float32)
        for e in ("leye", "reye")
    ]
    cls = [c / np.linalg.norm(c, axis=-1, keepdims=True) for c in cls]
    unlike = 1 - (cls[0] * cls[1]).sum(-1)
    results["eyes_unlike"] = {}
    for block in range(12):
        aucs = {
            f: round(roc_auc(y[np.isin(src, h)], unlike[np.isin(src, h), block] / 2), 4)
            for f, h in FOLDS.items()
        }
        results["eyes_unlike"][block + 1] = aucs
        print(f"eyes unlike, block {block + 1}: {aucs}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
