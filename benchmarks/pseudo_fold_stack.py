"""Fold CNNs that never saw a real fake, fused with the default's heads, side by side.

  uv run python benchmarks/loso.py -c configs/pseudo-only.yaml optim.epochs=8 \
      --out runs/loso-pseudo8
  uv run python benchmarks/stack_loso.py                  # caches the default's fold logits
  uv run python benchmarks/pseudo_fold_stack.py [--new runs/loso-pseudo8] [--folds gan ...]

For each leave-one-kind-out fold, the CNN trained on reals + pseudo-fakes only without the
held-out sources (``--new``) scores the fold's calib, val and held-out rows; its logits are put
beside those of the shipped recipe's fold CNN and the CLIP and frequency heads
(``<old>/<fold>/stack-base-<C>.npz``, written by ``stack_loso.py``; the two runs' splits are
checked identical) and stacked several ways: on the calib split as the default is, or with
equal weights. Printed per fold and on average: held-out AUC (95 % interval, whole videos
resampled), ECE and sharpness (mean |p - 0.5|), val AUC and ECE. Then whether the new CNN
scores the source of a real face: the held-out kind's reals against each training source's
reals of the val and calib splits (AUC 0.5 when it does not).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from facetrust.config import apply_threads
from facetrust.detect.calibration import sigmoid
from facetrust.detect.scoring import FaceScorer
from facetrust.train.config import load_config
from facetrust.train.fusion import fit_equal_weights, fit_stack, score_rows
from facetrust.train.loop import select_rows
from facetrust.train.metrics import ece_score, roc_auc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import FOLDS, fold_figures  # noqa: E402

# columns: 0 real-fake CNN (shipped recipe), 1 CLIP, 2 frequency, 3 pseudo-only CNN
COMBOS = {
    "shipped calib (cnn, clip, freq)": ("calib", [0, 1, 2]),
    "clip alone": ("calib", [1]),
    "pseudo cnn alone": ("calib", [3]),
    "calib (pseudo, clip, freq)": ("calib", [3, 1, 2]),
    "calib (pseudo, clip)": ("calib", [3, 1]),
    "equal (pseudo, clip)": ("equal", [3, 1]),
    "equal (pseudo, clip, freq)": ("equal", [3, 1, 2]),
    "calib (cnn, pseudo, clip, freq)": ("calib", [0, 3, 1, 2]),
    "equal (cnn, pseudo, clip)": ("equal", [0, 3, 1]),
}


def real_sources(splits: dict, fold: str, extra: dict) -> dict:
    """The new CNN's AUC of each training source's reals (val + calib rows) against the
    held-out kind's reals: far from 0.5 means it scores where a real face comes from."""
    rows = splits["val"] + splits["calib"]
    z = np.r_[extra["val"], extra["calib"]]
    src = np.array([r.source for r in rows])
    real = np.array([r.y for r in rows]) == 0
    y_test = np.array([r.y for r in splits["test"]])
    held = extra["test"][y_test == 0]
    out = {}
    for s in sorted(set(src[real])):
        z_s = z[real & (src == s)]
        y = np.r_[np.zeros(len(held)), np.ones(len(z_s))]
        out[str(s)] = round(roc_auc(y, sigmoid(np.r_[held, z_s])), 3)
    print(f"{fold:9s} its reals against the held-out reals, per training source: {out}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--old", default="runs/loso-long")
    ap.add_argument("--new", default="runs/loso-pseudo8")
    ap.add_argument("--folds", nargs="*", default=list(FOLDS))
    ap.add_argument("--c", default="clip=0.003,frequency=0.3", help="stack_loso.py's --c")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    apply_threads(2)
    old, new = Path(args.old), Path(args.new)
    tag = args.c.replace("=", "").replace(",", ".")  # stack_loso.py's cache name
    results = {}
    for fold in args.folds:
        ckpt = new / fold / "best.safetensors"
        if not ckpt.is_file():
            print(f"{fold}: no pseudo CNN yet", flush=True)
            continue
        cache = new / fold / f"stack-pseudo-{tag}.npz"
        d = dict(np.load(old / fold / f"stack-base-{tag}.npz"))
        cfg = load_config(new / fold / "config.yaml")
        splits = select_rows(cfg)
        if not cache.is_file():
            s_old = select_rows(load_config(old / fold / "config.yaml"))
            for name in ("calib", "val", "test"):
                a = [(r.path, r.face, r.y) for r in splits[name]]
                b = [(r.path, r.face, r.y) for r in s_old[name]]
                if a != b:  # the cached logits are of the old run's rows
                    raise SystemExit(f"{fold} {name}: the two runs' splits differ")
            manifest = Path(cfg.data.train_manifest)
            cnn = FaceScorer.from_checkpoint(ckpt, batch_size=64)
            cols = {
                n: score_rows(cnn, splits[n], manifest, cnn_only=True)
                for n in ("calib", "val", "test")
            }
            np.savez(cache, **cols)
        extra = dict(np.load(cache))
        for n in ("calib", "val", "test"):
            d[f"{n}_z"] = np.c_[d[f"{n}_z"], extra[n]]
        res = {"real_vs_held_out_reals": real_sources(splits, fold, extra)}
        for label, (kind, cols) in COMBOS.items():
            zc = d["calib_z"][:, cols]
            w, b = (
                fit_equal_weights(zc, d["calib_y"])
                if kind == "equal"
                else fit_stack(zc, d["calib_y"])
            )
            p_t = sigmoid(d["test_z"][:, cols] @ w + b)
            p_v = sigmoid(d["val_z"][:, cols] @ w + b)
            held = fold_figures(d["test_y"], p_t, d["test_videos"])
            res[label] = {
                "auc": held["auc"],
                "ci": held["auc_ci"],
                "ece": held["ece"],
                "sharp": round(float(np.abs(p_t - 0.5).mean()), 3),
                "val_auc": round(roc_auc(d["val_y"], p_v), 4),
                "val_ece": round(ece_score(d["val_y"], p_v), 4),
                "w": [round(float(x), 3) for x in np.ravel(w)],
            }
            r = res[label]
            print(
                f"{fold:9s} {label:34s} held {r['auc']:.3f} {r['ci']} ECE {r['ece']:.3f} "
                f"sharp {r['sharp']:.3f} | val {r['val_auc']:.4f} ECE {r['val_ece']:.3f} "
                f"| w {r['w']}",
                flush=True,
            )
        results[fold] = res
    if len(results) > 1:
        print("mean over folds: held-out AUC, worst, ECE | val AUC")
        for label in COMBOS:
            a = [r[label]["auc"] for r in results.values()]
            e = [r[label]["ece"] for r in results.values()]
            v = [r[label]["val_auc"] for r in results.values()]
            print(
                f"  {label:34s} {np.mean(a):.3f} worst {min(a):.3f} ECE {np.mean(e):.3f} "
                f"| val {np.mean(v):.4f}"
            )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
