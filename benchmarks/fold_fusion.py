"""Each leave-one-kind-out fold's CNN fused with a frozen-CLIP head, on the kind neither saw.

  python benchmarks/fold_fusion.py --runs runs/loso-small-pseudo [runs/loso-small-real ...]
                                   [--kinds sbi,splice,trace] [--also resynth] [--view clsmean-l2]

``benchmarks/loso.py`` trains a CNN per fold (``<run>/<fold>/best.safetensors``) and
``benchmarks/pseudo_loso.py`` fits a CLIP head per fold on the shortcuts sample. Fusing them per
fold for real (``loso.py --fuse``) needs the CLIP tokens of every prepared face (an hour on 2
cores); this scores both on the sample only (2,562 faces, 250 per source and label, whose
tokens pseudo_loso.py caches) and fuses them as ``facetrust fuse --weights equal`` does: each
input's logits divided by their spread over the sample's rows of the training kinds, averaged,
then one Platt scaling fitted on those rows. The CLIP head is pseudo_loso.py's set-up B (real
fakes of the training kinds + pseudo-fake twins of their reals, ``--kinds``/``--also``; or
``--setup A``, real fakes only, as today's default) on ``--view``, at one regularisation
strength ``--c``.

Printed per run and fold: AUC / ECE on the held-out kind's faces of the sample for the CNN (its
own temperature calibration), the CLIP head (its Platt scaling on its training rows) and the
equal-weight fusion; then mean and worst. The fusion's Platt scaling is fitted on training
rows that the CNN may have trained on (the sample is drawn from every prepared face), so its
ECE is an in-sample calibration's, as the CLIP head's is. Writes docs/fold-fusion.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from facetrust.config import apply_threads
from facetrust.data.manifest import read_manifest
from facetrust.train.fusion import fit_equal_weights, score_rows
from facetrust.train.metrics import ece_score, roc_auc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pseudo_loso  # noqa: E402
from loso import FOLDS  # noqa: E402
from shortcuts import sample  # noqa: E402


def cnn_columns(checkpoint: Path, rows, manifest: Path) -> tuple[np.ndarray, np.ndarray]:
    """The fold CNN's logits and calibrated probabilities for ``rows``."""
    from facetrust.detect.scoring import FaceScorer

    scores = score_rows(FaceScorer.from_checkpoint(checkpoint), rows, manifest)
    return scores.logits[:, 0], scores.probability


def scored(y: np.ndarray, p: np.ndarray) -> dict:
    return {"auc": round(roc_auc(y, p), 4), "ece": round(ece_score(y, p), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="benchmarks/loso.py --out folders")
    ap.add_argument("--manifest", default="data/shared.jsonl")
    ap.add_argument("--per-class", type=int, default=250)
    ap.add_argument("--kinds", default="sbi,splice,trace")
    ap.add_argument("--also", default="", help="as pseudo_loso.py's --also, e.g. resynth")
    ap.add_argument("--view", default="clsmean-l2", help="a pseudo_loso.py view of the tokens")
    ap.add_argument("--c", type=float, default=0.01, help="the CLIP head's regularisation")
    ap.add_argument(
        "--setup",
        default="B",
        choices=["A", "B"],
        help="the CLIP head's training set: A real fakes of the training kinds only (today's "
        "default), B with pseudo-fake twins of their reals",
    )
    ap.add_argument("--folds", nargs="*", default=list(FOLDS))
    ap.add_argument("--checkpoint", default="best", help="best or final (of each fold's run)")
    ap.add_argument("--out", default="docs/fold-fusion.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    apply_threads(args.threads)
    pseudo_loso.C_GRID = (args.c,)
    manifest = Path(args.manifest)
    rows = sample(read_manifest(manifest), args.per_class, args.seed)
    reals = [i for i, r in enumerate(rows) if r.label == "real" and r.landmarks]
    kinds = [k for k in args.kinds.split(",") if k]
    also = [k for k in args.also.split(",") if k]
    raw = pseudo_loso.mixed_features(manifest, rows, reals, kinds, also, args.seed)
    v = pseudo_loso.parse_view(args.view)
    x, data = pseudo_loso.view_data(raw, rows, reals, v)
    y, src = data.y, data.src

    results: dict = {}
    for run in args.runs:
        res = {}
        for fold in args.folds:
            ckpt = Path(run) / fold / f"{args.checkpoint}.safetensors"
            test = np.isin(src, FOLDS[fold])
            if not ckpt.is_file() or len(np.unique(y[test])) < 2:
                print(f"{run} {fold}: no {ckpt.name} (or one class held out); skipped")
                continue
            keep = ~np.isin(data.src_p, FOLDS[fold])
            z_clip = pseudo_loso.fit_setup(args.setup, data, ~test, keep, v)(x)
            z_cnn, p_cnn = cnn_columns(ckpt, rows, manifest)
            w, b = fit_equal_weights(np.c_[z_cnn, z_clip][~test], y[~test])
            z_fused = np.c_[z_cnn, z_clip] @ w + b
            res[fold] = {
                "cnn": scored(y[test], p_cnn[test]),
                "clip": scored(y[test], 1 / (1 + np.exp(-z_clip[test]))),
                "fused": scored(y[test], 1 / (1 + np.exp(-z_fused[test]))),
                "n": int(test.sum()),
            }
            cells = "  ".join(
                f"{k} {res[fold][k]['auc']:.3f}/{res[fold][k]['ece']:.3f}"
                for k in ("cnn", "clip", "fused")
            )
            print(f"{run} {fold:10s} n={test.sum():4d}  {cells}", flush=True)
        summary = {
            k: {
                "mean_auc": round(float(np.mean([f[k]["auc"] for f in res.values()])), 4),
                "worst_auc": round(float(np.min([f[k]["auc"] for f in res.values()])), 4),
            }
            for k in ("cnn", "clip", "fused")
            if res
        }
        results[run] = {"folds": res, "summary": summary}
        for k, s in summary.items():
            print(f"{run} {k:6s} mean {s['mean_auc']:.3f} worst {s['worst_auc']:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    about = {
        "kinds": kinds + also,
        "view": args.view,
        "setup": args.setup,
        "c": args.c,
        "n": len(rows),
        "checkpoint": args.checkpoint,
    }
    out.write_text(json.dumps({**about, "results": results}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
