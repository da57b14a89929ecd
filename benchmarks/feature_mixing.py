"""Mixing in feature space for the CLIP head: does it transfer to kinds of fake it never saw?

The CLIP expert's head (class + mean patch tokens of the 12 blocks, L2 per block; clean view;
C fixed, ``facetrust fuse``'s head fitting) is fitted on every face of the other kinds under
``benchmarks/loso.py``'s folds, with extra training rows made from the training faces' features
alone (no new image, no new CLIP pass):

- ``ref``: no extra row (the reference head);
- ``shift[A]``: every training face moved by A times the difference between the mean features
  of another training source's reals and of its own source's reals (A = 1 unless given, e.g.
  ``shift0.5``), label kept: a face "as if" it came from another source, so the head cannot
  score what tells the sources apart (a soft version of projecting the source means out);
- ``mixsame``: as many convex mixes of two faces of one label and of two different sources
  (weight uniform in [0, 1]), label kept;
- ``mixup``: as many mixes of any two faces (weight ~ Beta(0.4, 0.4); Zhang et al. 2018), the
  mixed label given as two rows weighted by it;
- ``mixwithin``: mixup within one source.

Each variant gets the four folds' AUC and ECE, and with ``--control`` the real-vs-real control
(every face scored by heads fitted on the other 4 of 5 groups of videos; AUC between the reals of
every pair of sources: near 0.5 when the head does not score the source) and with ``--in-dist``
the head fitted on ``configs/long.yaml``'s train split, scored on its val split.

Reads the feature cache ``clip_probe_loso.py --pool cls+mean --l2`` reads (made on first use).

Usage:

  uv run python benchmarks/feature_mixing.py ref,shift,mixup --control --in-dist \\
      --out docs/feature-mixing.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

from facetrust.config import apply_threads
from facetrust.data.manifest import read_manifest
from facetrust.detect.calibration import sigmoid
from facetrust.detect.experts import ClipExpert
from facetrust.train.features import VIEWS, extract_features
from facetrust.train.fusion import fit_linear_head, fusion_spec, widest_experts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clip_probe_loso import cross_fitted_control, in_distribution  # noqa: E402
from loso import FOLDS, fold_figures  # noqa: E402

VARIANTS = ("ref", "shift", "mixsame", "mixup", "mixwithin")


def extra_rows(x, y, src, how: str, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The variant's extra training rows ``(x, y, weight)`` (None for ``ref``)."""
    n = len(x)
    if how == "ref":
        return None
    if how.startswith("shift"):
        alpha = float(how[len("shift") :] or 1.0)
        means = {s: x[(src == s) & (y == 0)].mean(0) for s in np.unique(src[y == 0])}
        rows = np.flatnonzero(np.isin(src, list(means)))
        other = rng.choice(list(means), len(rows))
        keep = other != src[rows]
        rows, other = rows[keep], other[keep]
        move = np.stack([means[o] for o in other]) - np.stack([means[s] for s in src[rows]])
        return x[rows] + alpha * move, y[rows], np.ones(len(rows))
    if how in ("mixsame", "mixwithin"):  # partners drawn per row from the allowed pool
        i = rng.integers(n, size=n)
        j = np.empty(n, np.int64)
        cells = src if how == "mixwithin" else y
        for c in np.unique(cells):
            pool_rows = np.flatnonzero(cells == c)
            mine = np.flatnonzero(cells[i] == c)
            j[mine] = pool_rows[rng.integers(len(pool_rows), size=len(mine))]
        if how == "mixsame":  # redraw partners of the same source until they differ
            for _ in range(20):
                bad = np.flatnonzero(src[j] == src[i])
                if not len(bad):
                    break
                for c in np.unique(y[i[bad]]):
                    pool_rows = np.flatnonzero(y == c)
                    mine = bad[y[i[bad]] == c]
                    j[mine] = pool_rows[rng.integers(len(pool_rows), size=len(mine))]
            keep = src[j] != src[i]
            i, j = i[keep], j[keep]
            lam = rng.uniform(0, 1, len(i))[:, None].astype(x.dtype)
            return lam * x[i] + (1 - lam) * x[j], y[i], np.ones(len(i))
    elif how == "mixup":
        i, j = rng.integers(n, size=n), rng.integers(n, size=n)
    else:
        raise ValueError(f"no such variant: {how}")
    lam = rng.beta(0.4, 0.4, len(i)).astype(x.dtype)
    mixed = lam[:, None] * x[i] + (1 - lam[:, None]) * x[j]
    p = lam * y[i] + (1 - lam) * y[j]  # the mixed label, as a fake row and a real row
    ones, zeros = np.ones(len(i), np.int64), np.zeros(len(i), np.int64)
    return np.r_[mixed, mixed], np.r_[ones, zeros], np.r_[p, 1 - p]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("variants", help=f"comma-separated: {', '.join(VARIANTS)} (shiftA: A times)")
    ap.add_argument("--c", type=float, default=0.003, help="the head's C")
    ap.add_argument("--control", action="store_true", help="the real-vs-real control too")
    ap.add_argument("--in-dist", action="store_true", help="configs/long.yaml's val split too")
    ap.add_argument("--manifest", default="data/shared.jsonl")
    ap.add_argument("--features", default="data/features-shared")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    variants = args.variants.split(",")
    for how in variants:
        if not how.startswith("shift") and how not in VARIANTS:
            ap.error(f"no such variant: {how}")
    apply_threads(2)
    rows = [r for r in read_manifest(args.manifest) if r.crop]
    spec = fusion_spec("clip,frequency", clip_pool="cls+mean", clip_l2=True)
    table = extract_features(
        rows, Path(args.manifest), Path(args.features), widest_experts(spec), views=VIEWS[:1]
    )
    expert = ClipExpert(layers=tuple(range(1, 13)), pool="cls+mean", l2=True)
    x = table.get(expert, "clean", table.rows(rows)).astype(np.float32)
    y = np.array([r.y for r in rows])
    src = np.array([r.source for r in rows])
    videos = np.array([r.group("video") for r in rows])

    def score(how: str, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        xt, yt, st = x[train], y[train], src[train]
        extra = extra_rows(xt, yt, st, how, np.random.default_rng(0))
        w = None
        if extra is not None:
            w = np.r_[np.ones(len(yt)), extra[2]]
            xt, yt = np.concatenate([xt, extra[0]]), np.r_[yt, extra[1]]
            st = np.r_[st, np.full(len(extra[1]), "mixed")]  # unused: one C, no CV
        head, _ = fit_linear_head(xt, yt, st, (args.c,), sample_weight=w)
        return sigmoid(head(x[test]))

    out: dict = {"C": args.c, "faces": len(rows), "variants": {}}
    for how in variants:
        t0, res = time.time(), {}
        recipe = partial(lambda h, tr, te: (score(h, tr, te), args.c), how)  # the helpers' form
        for fold, held in FOLDS.items():
            test = np.isin(src, held)
            p = score(how, np.flatnonzero(~test), np.flatnonzero(test))
            f = fold_figures(y[test], p, videos[test])
            res[fold] = {k: f[k] for k in ("auc", "auc_ci", "ece")}
            print(f"{how:10s} {fold:10s} AUC {f['auc']:.3f} ECE {f['ece']:.3f}", flush=True)
        aucs = [r["auc"] for r in res.values()]
        found = {"folds": res, "mean_auc": float(np.mean(aucs)), "worst_auc": float(min(aucs))}
        print(f"{how:10s} mean {np.mean(aucs):.3f} worst {min(aucs):.3f}", flush=True)
        if args.control:
            pairs = cross_fitted_control(recipe, y, src, videos)["pairs"]
            dist = [abs(v - 0.5) for v in pairs.values()]
            found["real_vs_real"] = {
                "pairs": pairs,
                "outside_0.40_0.60": int(sum(d > 0.1 for d in dist)),
                "mean_distance": round(float(np.mean(dist)), 4),
                "largest_distance": round(float(max(dist)), 4),
            }
            print(f"{how:10s} real-vs-real {found['real_vs_real']}", flush=True)
        if args.in_dist:
            row_of = {r.crop: i for i, r in enumerate(rows)}
            found["in_dist"] = in_distribution(recipe, y, src, row_of, "configs/long.yaml")
        found["seconds"] = round(time.time() - t0)
        out["variants"][how] = found
        if args.out:
            Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
