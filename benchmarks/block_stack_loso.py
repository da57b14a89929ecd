"""Can the blocks of CLIP that transfer be picked by how they transfer between the kinds seen?

  python benchmarks/block_stack_loso.py [--manifest data/shared.jsonl] [--c 0.01]
                                        [--out docs/block-stack-loso.json]

Issue 14's item 6 for the blocks of the CLIP expert instead of for the experts: on
benchmarks/shortcuts.py's stratified sample (250 faces per source and label; the class + mean
patch tokens of each of the 12 blocks, L2, that benchmarks/pseudo_loso.py caches in
data/pseudo-loso-raw-crops.npz), for each leave-one-kind-out fold of benchmarks/loso.py one
logistic head per block (facetrust fuse's standardised head, fixed ``--c``) is fitted on the other
kinds, and the 12 block logits are combined four ways:

  equal        their mean, each divided by its spread (``facetrust fuse --weights equal``'s rule)
  stack        a logistic stack fitted on *inner* leave-one-kind-out logits: each of the training
               kinds scored by block heads that did not see it, so the stack trusts the blocks
               that carried over between the kinds it has
  stack+       the same stack with weights kept >= 0
  best-inner   the one block whose inner leave-one-kind-out AUC is highest

beside one head on all 12 blocks at once (the shipped recipe's, same C). Prints AUC per fold,
mean and worst, the per-block AUC on the held-out kind against the inner one (does the inner
ranking foretell the outer?), and writes ``--out``. ~1 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from facetrust.config import apply_threads
from facetrust.data.manifest import read_manifest
from facetrust.detect.calibration import sigmoid
from facetrust.train.fusion import fit_linear_head, fit_stack
from facetrust.train.metrics import roc_auc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import FOLDS  # noqa: E402
from pseudo_loso import sample_tokens, view  # noqa: E402
from shortcuts import sample  # noqa: E402

BLOCKS = 12


def block_logits(x, y, src, train, test, c: float) -> np.ndarray:
    """``(test rows, 12)``: each block's head, fitted on ``train``, on the ``test`` rows."""
    out = np.zeros((int(test.sum()), BLOCKS))
    for b in range(BLOCKS):
        head, _ = fit_linear_head(x[train, b], y[train], src[train], (c,))
        out[:, b] = head(x[test, b])
    return out


def fit_nonneg_stack(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """:func:`facetrust.train.fusion.fit_stack` with the weights kept >= 0: a logistic
    regression on ``z`` with the same penalty (sklearn's C = 1: half the squared weights plus
    the summed log-loss), fitted by L-BFGS-B under bounds. Weights and bias."""
    from scipy.optimize import minimize

    a = np.c_[z, np.ones(len(z))]
    s = 2 * y - 1.0

    def loss(w):
        m = s * (a @ w)
        grad = -(a * (s * sigmoid(-m))[:, None]).sum(0) + np.r_[w[:-1], 0]
        return np.logaddexp(0, -m).sum() + w[:-1] @ w[:-1] / 2, grad

    bounds = [(0, None)] * z.shape[1] + [(None, None)]
    w = minimize(loss, np.zeros(a.shape[1]), jac=True, method="L-BFGS-B", bounds=bounds).x
    return w[:-1], float(w[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--manifest", default="data/shared.jsonl")
    ap.add_argument("--per-class", type=int, default=250)
    ap.add_argument("--c", type=float, default=0.01)
    ap.add_argument("--out", default="docs/block-stack-loso.json")
    args = ap.parse_args()
    apply_threads(2)
    rows = sample(read_manifest(Path(args.manifest)), args.per_class, 0)
    raw, _ = sample_tokens([r.crop for r in rows])
    x = view(raw, "cls+mean", True).reshape(len(raw), BLOCKS, -1)  # (faces, block, 1536)
    y = np.array([int(r.label == "fake") for r in rows])
    src = np.array([r.source for r in rows])
    report = {}
    for fold, held in FOLDS.items():
        test = np.isin(src, held)
        train = ~test
        inner_z, inner_y = [], []
        for other, sources in FOLDS.items():
            if other != fold:
                inner = train & np.isin(src, sources)
                inner_z.append(block_logits(x, y, src, train & ~inner, inner, args.c))
                inner_y.append(y[inner])
        zi, yi = np.concatenate(inner_z), np.concatenate(inner_y)
        spread = zi.std(0)
        inner_auc = [roc_auc(yi, sigmoid(zi[:, b])) for b in range(BLOCKS)]
        zt = block_logits(x, y, src, train, test, args.c) / spread
        best = int(np.argmax(inner_auc))
        row = {"equal": zt.mean(1), "best-inner": zt[:, best]}
        for name, fit in (("stack", fit_stack), ("stack+", fit_nonneg_stack)):
            w, bias = fit(zi / spread, yi)
            row[name] = zt @ w + bias
        flat = x.reshape(len(x), -1)
        head, _ = fit_linear_head(flat[train], y[train], src[train], (args.c,))
        row["one head"] = head(flat[test])
        report[fold] = {k: roc_auc(y[test], sigmoid(v)) for k, v in row.items()}
        report[fold]["best inner block"] = best + 1
        report[fold]["inner AUC per block"] = [round(a, 3) for a in inner_auc]
        report[fold]["AUC per block"] = [round(roc_auc(y[test], sigmoid(v)), 3) for v in zt.T]
        outer = report[fold]["AUC per block"]
        report[fold]["inner-outer rank correlation"] = float(
            np.corrcoef(np.argsort(np.argsort(inner_auc)), np.argsort(np.argsort(outer)))[0, 1]
        )
    names = ["one head", "equal", "stack", "stack+", "best-inner"]
    print(f"C = {args.c}, {len(rows)} faces")
    print("| fold | " + " | ".join(names) + " | inner/outer rank corr. |")
    for fold, r in report.items():
        cells = " | ".join(f"{r[n]:.3f}" for n in names)
        print(f"| {fold} | {cells} | {r['inner-outer rank correlation']:+.2f} |")
    for agg, f in (("mean", np.mean), ("worst", np.min)):
        print(
            f"| {agg} | "
            + " | ".join(f"{f([r[n] for r in report.values()]):.3f}" for n in names)
            + " | |"
        )
    for fold, r in report.items():
        print(f"{fold}: inner AUC per block {r['inner AUC per block']}")
        print(f"{' ' * len(fold)}  held-out AUC     {r['AUC per block']}")
    Path(args.out).write_text(json.dumps({"c": args.c, "folds": report}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
