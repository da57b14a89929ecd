"""Which fusion stack transfers? The default's fused leave-one-kind-out, stacked several ways.

  uv run python benchmarks/stack_loso.py [--runs runs/loso-long] [--folds gan composite ...]
                                         [--c clip=0.003,frequency=0.3] [--out JSON]

For each fold whose CNN ``benchmarks/loso.py`` trained (``<runs>/<fold>/best.safetensors``; the
fold's ``config.yaml`` gives its splits, the held-out kind as ``test``), the expert heads are
fitted as ``facetrust fuse`` fits the shipped default's (CLIP class + mean tokens of every block,
L2, and the frequency spectrum; both views; every train source; one C per expert, ``--c``), and
the stack over the (CNN, CLIP, frequency) logits is fitted in turn on:

  calib       the fold's calib split (the seen kinds: how the shipped default is stacked)
  oof         out-of-fold logits of the other folds' faces in the train split, each fold scored
              by its own CNN (trained without it) and by heads refitted without it
              (``facetrust fuse --fold``): the stack learns what transfers to a kind it did
              not see, and never sees the held-out kind
  oof-bal     the same rows, every (fold, label) cell weighed alike (a kind with five times the
              faces, or more fakes than reals, no longer sets the weights or the bias)
  oof+calib   both sets of rows, each half of the total weight (oof-bal's weights within its half)
  calib/oof-T the calib stack's direction (so its ranking, hence AUC, on every face), its
              scale and bias refitted on the out-of-fold rows (cells alike): how confident to
              be is learned where the inputs did not train
  calib/half-T the same, the scale and bias fitted on both sets of rows as oof+calib weighs them
  equal       each input divided by its spread, averaged, Platt-scaled on calib (``--weights
              equal``)
  clip        the CLIP head alone, Platt-scaled on calib

and scored on the held-out kind (AUC with its 95 % interval, whole videos resampled; ECE) and
on the val split (the seen kinds: AUC, ECE), side by side, each with its sharpness, the mean
|p - 0.5| (an ECE near 0 from probabilities all near the base rate says nothing). Folds whose
CNN has not finished are neither evaluated nor stacked on (listed). The logits are cached per fold
in ``<runs>/<fold>/stack-base-<C>.npz`` and, per other fold, ``stack-oof-<other>-<C>.npz`` (on 2
cores ~4-7 min for a fold's heads and logits, ~2-4 min for each other fold's); ``--fresh``
recomputes them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import cache, partial
from pathlib import Path

import numpy as np

from facetrust.config import apply_threads
from facetrust.detect.calibration import sigmoid
from facetrust.detect.scoring import FaceScorer
from facetrust.train.config import load_config
from facetrust.train.features import VIEWS, extract_features
from facetrust.train.fusion import (
    _oof_columns,
    cell_weights,
    fit_equal_weights,
    fit_expert_head,
    fit_stack,
    fusion_spec,
    score_rows,
    widest_experts,
)
from facetrust.train.loop import select_rows
from facetrust.train.metrics import ece_score, roc_auc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import FOLDS, fold_figures  # noqa: E402

STACKS = ("calib", "oof", "oof-bal", "oof+calib", "calib/oof-T", "calib/half-T", "equal", "clip")


def _spec(c: str, folds=()):
    """The shipped default's experts (CLIP class + mean tokens of every block, L2; frequency) at
    ``c``, stacked out of fold on ``folds`` (``facetrust fuse --fold``) when given."""
    return fusion_spec("clip,frequency", clip_pool="cls+mean", clip_l2=True, c=c, folds=list(folds))


def _fold_setup(runs: Path, fold: str, c: str, features_dir: Path):
    """The fold run's splits, manifest and the feature table of every split's faces."""
    cfg = load_config(runs / fold / "config.yaml")
    splits = select_rows(cfg)
    manifest = Path(cfg.data.train_manifest)
    every = [r for part in splits.values() for r in part]
    table = extract_features(every, manifest, features_dir, widest_experts(_spec(c)), views=VIEWS)
    return splits, manifest, table


def base_columns(setup, runs: Path, fold: str, c: str) -> dict:
    """The logits (CNN, CLIP, frequency) of the fold's calib, val and held-out test rows: its
    CNN, and heads fitted as ``facetrust fuse`` fits them on its train split (their C kept)."""
    splits, manifest, table = setup
    spec = _spec(c)
    train = splits["train"]
    y_train = np.array([r.y for r in train])
    groups = np.array([r.source for r in train])
    experts, cs = spec.build(), []
    idx = table.rows(train)
    for ex in experts:
        views = [table.get(ex, v, idx) for v in VIEWS]
        grid = (spec.expert_c[ex.name],) if ex.name in spec.expert_c else spec.c_grid
        ex.head, info = fit_expert_head(views, y_train, groups, None, grid)
        cs.append(info["C"])
        del views
    cnn = FaceScorer.from_checkpoint(runs / fold / "best.safetensors", batch_size=64)
    out: dict = {"head_c": np.array(cs)}
    for name in ("calib", "val", "test"):
        rows = splits[name]
        cols = [score_rows(cnn, rows, manifest, cnn_only=True)]
        cols += [ex.head(table.get(ex, "clean", table.rows(rows))) for ex in experts]
        out[f"{name}_z"] = np.stack(cols, 1)
        out[f"{name}_y"] = np.array([r.y for r in rows])
    out["test_videos"] = np.array([r.group("video") for r in splits["test"]])
    return out


def oof_columns(setup, runs: Path, other: str, head_c, c: str) -> dict:
    """Out-of-fold logits of ``other``'s faces in the fold's train split: ``other``'s CNN and
    heads refitted (at ``head_c``) on every other train row (``facetrust fuse --fold``)."""
    splits, manifest, table = setup
    spec = _spec(c, [f"{other}={','.join(FOLDS[other])}:{runs / other / 'best.safetensors'}"])
    experts = spec.build()
    fit_info = {ex.name: {"C": float(v)} for ex, v in zip(experts, head_c, strict=True)}
    z, y, _ = _oof_columns(spec, experts, fit_info, splits["train"], table, manifest, print)
    return {"z": z, "y": y}


def stacks(d: dict) -> dict[str, tuple[np.ndarray, float]]:
    """Every stack of the docstring: name -> (weights over CNN, CLIP, frequency; bias)."""
    zc, yc, zo, yo = d["calib_z"], d["calib_y"], d["oof_z"], d["oof_y"]
    w_bal = cell_weights(d["oof_fold"], yo)
    both_w = np.r_[np.full(len(yc), len(yo) / len(yc)), w_bal]  # two halves of equal weight
    a, b = fit_stack(zc[:, [1]], yc)
    w_c, b_c = fit_stack(zc, yc)

    def rescaled(z, y, weight):  # Platt over the calib stack's score: its direction kept
        (t,), bias = fit_stack((z @ w_c)[:, None], y, sample_weight=weight)
        return t * w_c, bias

    return {
        "calib": (w_c, b_c),
        "oof": fit_stack(zo, yo),
        "oof-bal": fit_stack(zo, yo, sample_weight=w_bal),
        "oof+calib": fit_stack(np.r_[zc, zo], np.r_[yc, yo], sample_weight=both_w),
        "calib/oof-T": rescaled(zo, yo, w_bal),
        "calib/half-T": rescaled(np.r_[zc, zo], np.r_[yc, yo], both_w),
        "equal": fit_equal_weights(zc, yc),
        "clip": (np.array([0.0, a[0], 0.0]), b),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", default="runs/loso-long", help="benchmarks/loso.py --out")
    ap.add_argument("--folds", nargs="*", default=list(FOLDS))
    ap.add_argument("--c", default="clip=0.003,frequency=0.3", help="the heads' C (fuse --c)")
    ap.add_argument("--features", default="data/features-shared")
    ap.add_argument("--fresh", action="store_true", help="recompute the cached logits")
    ap.add_argument("--out", default="", help="write the figures as JSON")
    args = ap.parse_args()
    apply_threads(2)
    runs = Path(args.runs)
    trained = [f for f in FOLDS if (runs / f / "best.safetensors").is_file()]
    print(f"folds with a trained CNN: {', '.join(trained) or 'none'}", flush=True)
    results: dict = {}
    for fold in [f for f in args.folds if f in trained]:
        stacked_on = [f for f in trained if f != fold]
        if not stacked_on:
            print(f"{fold}: no other fold's CNN to stack on", flush=True)
            continue
        tag = args.c.replace("=", "").replace(",", ".")
        t0 = time.time()
        setup = cache(partial(_fold_setup, runs, fold, args.c, Path(args.features)))  # once
        base = runs / fold / f"stack-base-{tag}.npz"
        if args.fresh or not base.is_file():
            np.savez(base, **base_columns(setup(), runs, fold, args.c))
        d = dict(np.load(base))
        parts = []
        for other in stacked_on:
            oof = runs / fold / f"stack-oof-{other}-{tag}.npz"
            if args.fresh or not oof.is_file():
                np.savez(oof, **oof_columns(setup(), runs, other, d["head_c"], args.c))
            parts.append(dict(np.load(oof)))
        d["oof_z"] = np.concatenate([p["z"] for p in parts])
        d["oof_y"] = np.concatenate([p["y"] for p in parts])
        d["oof_fold"] = np.concatenate(
            [np.full(len(p["y"]), o) for p, o in zip(parts, stacked_on, strict=True)]
        )
        res = {"stacked_on": stacked_on, "inputs": {}, "stacks": {}}
        for i, name in enumerate(("cnn", "clip", "frequency")):
            res["inputs"][name] = {
                "held_out_auc": round(roc_auc(d["test_y"], sigmoid(d["test_z"][:, i])), 4),
                "val_auc": round(roc_auc(d["val_y"], sigmoid(d["val_z"][:, i])), 4),
            }
        for name, (w, b) in stacks(d).items():
            p_test, p_val = sigmoid(d["test_z"] @ w + b), sigmoid(d["val_z"] @ w + b)
            held = fold_figures(d["test_y"], p_test, d["test_videos"])
            res["stacks"][name] = {
                "held_out_auc": held["auc"],
                "held_out_auc_ci": held["auc_ci"],
                "held_out_ece": held["ece"],
                # mean |p - 0.5|: a low ECE from probabilities all near the base rate is a
                # collapsed calibration, not a confident one
                "held_out_sharpness": round(float(np.abs(p_test - 0.5).mean()), 4),
                "val_sharpness": round(float(np.abs(p_val - 0.5).mean()), 4),
                "val_auc": round(roc_auc(d["val_y"], p_val), 4),
                "val_ece": round(ece_score(d["val_y"], p_val), 4),
                "weights": [round(float(v), 3) for v in w],
                "bias": round(float(b), 3),
            }
        results[fold] = res
        print(
            f"{fold} (stacked on {', '.join(stacked_on)}; {time.time() - t0:.0f} s)  inputs "
            + "  ".join(f"{k} {v['held_out_auc']:.3f}" for k, v in res["inputs"].items()),
            flush=True,
        )
        for name, s in res["stacks"].items():
            print(
                f"  {name:12s} held out AUC {s['held_out_auc']:.3f} ECE {s['held_out_ece']:.3f}"
                f" sharp {s['held_out_sharpness']:.3f} | val AUC {s['val_auc']:.3f} ECE "
                f"{s['val_ece']:.3f} sharp {s['val_sharpness']:.3f} | weights {s['weights']}"
                f" bias {s['bias']}",
                flush=True,
            )
    means = {}
    if len(results) > 1:
        keys = ("held_out_auc", "held_out_ece", "held_out_sharpness", "val_auc", "val_ece")
        print("mean over folds (held-out AUC / ECE / sharpness, worst AUC | val AUC / ECE):")
        for name in STACKS:
            rows = [r["stacks"][name] for r in results.values()]
            m = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in keys}
            m["worst_held_out_auc"] = min(r["held_out_auc"] for r in rows)
            means[name] = m
            print(
                f"  {name:12s} {m['held_out_auc']:.3f} / {m['held_out_ece']:.3f} / "
                f"{m['held_out_sharpness']:.3f}, worst {m['worst_held_out_auc']:.3f} | "
                f"{m['val_auc']:.3f} / {m['val_ece']:.3f}"
            )
    if args.out:
        Path(args.out).write_text(
            json.dumps({"c": args.c, "folds": results, "mean": means}, indent=1) + "\n"
        )


if __name__ == "__main__":
    main()
