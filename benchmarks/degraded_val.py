"""Each model's figures on a manifest's faces as cached and as a low-quality re-upload shows them.

Every face of a prepared manifest (e.g. the default's val split, ``data/val-long.jsonl``) is
scored through the whole scoring core (CNN, experts, fusion, calibration) twice: on its cached
aligned crop, and on the same crop degraded the way the expert heads' ``degraded`` view is
(:func:`facetrust.train.features.degrade`: shrunk to a random side in 64-160 px, JPEG at
quality 50-95, enlarged back, seeded per face, so every model sees the very same degraded
faces). Prints, per model and view, the AUC with its 95 % interval over whole videos, the ECE,
and the share of reals and of fakes at or above the model's threshold; per source as well.
Usage:

  python benchmarks/degraded_val.py data/val-long.jsonl \\
      --models facetrust-default runs/cand-clean/facetrust-fused.safetensors [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from facetrust.data.manifest import read_crop, read_manifest
from facetrust.detect.scoring import load_scorer
from facetrust.models import resolve_model
from facetrust.train.features import _row_seed, degrade

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import fold_figures  # noqa: E402


def view_crops(manifest: Path, rows, view: str) -> list[np.ndarray]:
    crops = [read_crop(manifest, r.crop) for r in rows]
    if view == "clean":
        return crops
    return [degrade(c, _row_seed(r.crop, 0)) for r, c in zip(rows, crops, strict=True)]


def figures(y: np.ndarray, p: np.ndarray, videos: list[str], threshold: float) -> dict:
    """AUC (interval over whole videos) and ECE as every benchmark writes them, where both
    classes are there, and the share of reals / fakes at or above ``threshold``."""
    out = {"n": int(y.size), "fakes": int(y.sum())}
    if 0 < y.sum() < y.size:
        out.update(fold_figures(y, p, videos))
    if (y == 0).any():
        out["reals_flagged"] = round(float((p[y == 0] >= threshold).mean()), 4)
    if (y == 1).any():
        out["fakes_caught"] = round(float((p[y == 1] >= threshold).mean()), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--models", nargs="+", default=["facetrust-default"])
    ap.add_argument(
        "--views", nargs="+", choices=["clean", "degraded"], default=["clean", "degraded"]
    )
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args()
    rows = [r for r in read_manifest(args.manifest) if r.crop]
    y = np.array([r.y for r in rows])
    videos = [r.group("video") for r in rows]
    sources = sorted({r.source for r in rows})
    report: dict = {"manifest": str(args.manifest), "faces": len(rows), "models": {}}
    for name in args.models:
        _, _, scorer = load_scorer(resolve_model(name), runtime="torch", device="cpu")
        threshold = float(scorer.meta.threshold)
        per_view = {}
        for view in args.views:
            probs = []
            for i in range(0, len(rows), 64):
                part = rows[i : i + 64]
                probs.append(scorer(view_crops(args.manifest, part, view)).probability)
            p = np.concatenate(probs)
            entry = figures(y, p, videos, threshold)
            entry["per_source"] = {}
            for s in sources:
                m = np.array([r.source == s for r in rows])
                entry["per_source"][s] = figures(
                    y[m], p[m], [v for v, k in zip(videos, m, strict=True) if k], threshold
                )
            per_view[view] = entry
            ci = entry.get("auc_ci") or [float("nan")] * 2
            print(
                f"{name} [{view}]: AUC {entry['auc']:.3f} ({ci[0]:.3f}-{ci[1]:.3f}), "
                f"ECE {entry['ece']:.3f}, reals flagged {entry['reals_flagged']:.1%}, "
                f"fakes caught {entry['fakes_caught']:.1%} at {threshold:.3f}",
                flush=True,
            )
            for s, f in entry["per_source"].items():
                auc = f"AUC {f['auc']:.3f}" if "auc" in f else "one class"
                flagged = (
                    f", reals flagged {f['reals_flagged']:.1%}" if "reals_flagged" in f else ""
                )
                caught = f", fakes caught {f['fakes_caught']:.1%}" if "fakes_caught" in f else ""
                print(f"    {s}: {f['n']} faces, {auc}{flagged}{caught}", flush=True)
        report["models"][name] = {"threshold": threshold, "views": per_view}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
