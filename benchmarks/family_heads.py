"""Heads per family of pseudo-fake twins, each on the CLIP blocks where its cue lives, averaged.

  python benchmarks/family_heads.py [--out docs/family-heads.json]

Early CLIP blocks carry what transfers to diffusion faces, late blocks what transfers to
blends, and the ``resynth`` twins (the whole face re-made by facetrust's autoencoder) are the one
kind that moves the GAN fold. So: a setup-B head of ``benchmarks/pseudo_loso.py`` (real fakes of
the other kinds + twins, class + mean tokens, L2, ``C`` 0.01) per (twin family, span of blocks),
``sst`` = sbi/splice/trace twins and ``rs`` = resynth twins, averaged with equal weights after
dividing each by its spread on its training rows (``facetrust fuse --weights equal``'s rule;
``identity_loso.fused_head``). AUC / ECE per held-out kind on the shortcuts sample.

Reads pseudo_loso.py's caches (``--kinds sbi,splice,trace`` and ``--kinds resynth`` build them;
~50 + ~19 min if missing); the heads take ~14 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from facetrust.config import apply_threads
from facetrust.data.manifest import read_manifest
from facetrust.train.metrics import ece_score, roc_auc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pseudo_loso as pl  # noqa: E402
from identity_loso import fused_head  # noqa: E402
from loso import FOLDS  # noqa: E402
from shortcuts import sample  # noqa: E402

FAMILIES = {"sst": ["sbi", "splice", "trace"], "rs": ["resynth"]}
# heads averaged: (family, blocks) each
COMBOS = {
    "sst all": [("sst", "")],
    "rs all": [("rs", "")],
    "sst all + rs all": [("sst", ""), ("rs", "")],
    "sst 7-12 + rs 1-6": [("sst", "@7-12"), ("rs", "@1-6")],
    "sst all + rs 1-6": [("sst", ""), ("rs", "@1-6")],
    "sst 7-12 + rs all": [("sst", "@7-12"), ("rs", "")],
    "sst 1-6 + sst 7-12 + rs 1-6": [("sst", "@1-6"), ("sst", "@7-12"), ("rs", "@1-6")],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--manifest", default="data/shared.jsonl")
    ap.add_argument("--per-class", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="docs/family-heads.json")
    args = ap.parse_args()
    apply_threads(args.threads)
    pl.C_GRID = (0.01,)
    manifest = Path(args.manifest)
    rows = sample(read_manifest(manifest), args.per_class, args.seed)
    reals = [i for i, r in enumerate(rows) if r.label == "real" and r.landmarks]
    raw = {f: pl.features(manifest, rows, reals, k, args.seed) for f, k in FAMILIES.items()}
    y = np.array([r.y for r in rows])
    src = np.array([r.source for r in rows])
    views: dict = {}

    def data(family: str, span: str):
        if (family, span) not in views:
            v = pl.parse_view("clsmean-l2" + span)
            views[family, span] = (*pl.view_data(raw[family], rows, reals, v), v)
        return views[family, span]

    report: dict = {}
    for name, parts in COMBOS.items():
        res = {}
        for fold, held in FOLDS.items():
            test = np.isin(src, held)
            keep = ~np.isin(src[reals], held)
            ds = [data(*p) for p in parts]
            heads = [pl.fit_setup("B", d, ~test, keep, v) for _, d, v in ds]
            if len(heads) == 1:
                logit = heads[0](ds[0][0][test])
            else:
                head = fused_head(heads, [d for _, d, _ in ds], "B", ~test, keep)
                logit = head([x[test] for x, _, _ in ds])
            p = 1 / (1 + np.exp(-logit))
            res[fold] = {
                "auc": round(roc_auc(y[test], p), 4),
                "ece": round(ece_score(y[test], p), 4),
            }
        aucs = [r["auc"] for r in res.values()]
        report[name] = {
            "folds": res,
            "mean_auc": round(float(np.mean(aucs)), 4),
            "worst_auc": min(aucs),
        }
        cells = "  ".join(f"{k} {r['auc']:.3f}/{r['ece']:.3f}" for k, r in res.items())
        print(f"{name:30s} {cells}  mean {np.mean(aucs):.3f} worst {min(aucs):.3f}", flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
