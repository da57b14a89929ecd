"""Do pseudo-fakes made from reals help a frozen-CLIP head on kinds of fake it never saw?

  python benchmarks/pseudo_loso.py [--manifest data/shared.jsonl] [--per-class 250]
                                   [--pool cls|cls+mean] [--l2] [--kinds sbi,...]

The same stratified sample as benchmarks/shortcuts.py. For each real face with landmarks one
pseudo-fake is made (``--kinds``: the registered pseudo-fake kinds, drawn evenly; seeded).
CLIP ViT-B/16 features (all 12 blocks; ``--pool``/``--l2`` as the CLIP expert's options) of
every crop, then leave-one-kind-out with a linear head (facetrust fuse's grouped-CV logistic
regression) in three set-ups, each tested on the held-out kind's real and fake faces:

  A  real fakes of the other kinds            (today's recipe)
  B  A + pseudo-fakes made from the training reals
  C  reals + pseudo-fakes only (no real fake at all, SBI-style)

Prints AUC and ECE per fold, mean and worst, and writes docs/pseudo-loso-<tag>.json.
Features are cached in data/pseudo-loso-<tag>.npz.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from facetrust.config import apply_threads
from facetrust.data.manifest import read_crop, read_manifest, resolve
from facetrust.detect.experts import ClipExpert
from facetrust.train.fusion import fit_linear_head
from facetrust.train.metrics import ece_score, roc_auc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import FOLDS  # noqa: E402
from shortcuts import sample  # noqa: E402


def make_fakes(kinds: list[str]):
    """A function (crop, landmarks, donor crop, donor landmarks, rng) -> fake crop."""
    from facetrust.data.pseudo import PseudoFakeMix

    mix = PseudoFakeMix({k: 1.0 for k in kinds})

    def make(img, lm, donor, dlm, rng):
        return mix(img, lm, rng, donor=donor, donor_landmarks=dlm).image

    return make


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--manifest", default="data/shared.jsonl")
    ap.add_argument("--per-class", type=int, default=250)
    ap.add_argument("--pool", default="cls", choices=["cls", "cls+mean"])
    ap.add_argument("--l2", action="store_true")
    ap.add_argument("--kinds", default="sbi")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    apply_threads(args.threads)
    kinds = [k for k in args.kinds.split(",") if k]
    tag = f"{args.pool.replace('+', '')}{'-l2' if args.l2 else ''}-{'+'.join(kinds)}"
    manifest = Path(args.manifest)
    rows = sample(read_manifest(manifest), args.per_class, args.seed)
    reals = [i for i, r in enumerate(rows) if r.label == "real" and r.landmarks]
    expert = ClipExpert(pool=args.pool, l2=args.l2)
    cache = Path(f"data/pseudo-loso-{tag}.npz")
    keys = [r.crop for r in rows]
    if cache.is_file() and list(np.load(cache)["keys"]) == keys:
        z = np.load(cache)
        x, xp, donor_of = z["x"], z["xp"], z["donor"]
    else:
        make = make_fakes(kinds)
        rng = np.random.default_rng(args.seed)
        x_parts, xp_parts, t0 = [], [], time.time()
        shared = Path("data/shortcuts-facetrust-default.npz")  # benchmarks/shortcuts.py's cache
        reuse = None
        if shared.is_file() and args.pool == "cls" and not args.l2:
            with np.load(shared) as z:
                if list(z["keys"]) == keys:
                    reuse = z["clip"]  # the same rows, the same 12 class tokens
        # a donor for each real: another real of the same source (splices need one)
        donor_of = np.array(
            [
                rng.choice([j for j in reals if rows[j].source == rows[i].source and j != i] or [i])
                for i in reals
            ]
        )
        for b in range(0, 0 if reuse is not None else len(rows), 32):
            crops = [read_crop(manifest, r.crop) for r in rows[b : b + 32]]
            x_parts.append(expert.features(crops))
            print(
                f"  real/fake features {b + len(crops)}/{len(rows)} ({time.time() - t0:.0f} s)",
                flush=True,
            )
        for b in range(0, len(reals), 32):
            fakes = []
            for i, d in zip(reals[b : b + 32], donor_of[b : b + 32], strict=True):
                lm = np.load(resolve(manifest, rows[i].landmarks)).astype(np.float32)[:, :2]
                dlm = np.load(resolve(manifest, rows[d].landmarks)).astype(np.float32)[:, :2]
                img, donor = read_crop(manifest, rows[i].crop), read_crop(manifest, rows[d].crop)
                fakes.append(make(img, lm, donor, dlm, np.random.default_rng([args.seed, i])))
            xp_parts.append(expert.features(fakes))
            print(
                f"  pseudo-fake features {b + len(fakes)}/{len(reals)} ({time.time() - t0:.0f} s)",
                flush=True,
            )
        x = reuse if reuse is not None else np.concatenate(x_parts)
        xp = np.concatenate(xp_parts)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, keys=np.array(keys), x=x, xp=xp, donor=donor_of)
    y = np.array([r.y for r in rows])
    src = np.array([r.source for r in rows])
    src_p = src[reals]

    results: dict = {}
    for setup in ("A", "B", "C"):
        res = {}
        for fold, held in FOLDS.items():
            test = np.isin(src, held)
            if len(np.unique(y[test])) < 2:
                continue
            tr = ~test
            if setup == "C":
                tr = tr & (y == 0)
            xs, ys, gs = [x[tr]], [y[tr]], [src[tr]]
            if setup in ("B", "C"):
                keep = ~np.isin(src_p, held)
                xs.append(xp[keep])
                ys.append(np.ones(int(keep.sum()), np.int64))
                gs.append(src_p[keep])
            head, _ = fit_linear_head(np.concatenate(xs), np.concatenate(ys), np.concatenate(gs))
            p = 1 / (1 + np.exp(-head(x[test])))
            res[fold] = {
                "auc": round(roc_auc(y[test], p), 4),
                "ece": round(ece_score(y[test], p), 4),
            }
        aucs = [v["auc"] for v in res.values()]
        results[setup] = {
            "folds": res,
            "mean_auc": round(float(np.mean(aucs)), 4),
            "worst_auc": round(float(np.min(aucs)), 4),
        }
        cells = "  ".join(f"{k} {v['auc']:.3f}/{v['ece']:.3f}" for k, v in res.items())
        print(
            f"{setup}  {cells}  mean {results[setup]['mean_auc']:.3f} worst "
            f"{results[setup]['worst_auc']:.3f}",
            flush=True,
        )
    out = Path(f"docs/pseudo-loso-{tag}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "features": expert.options,
                "kinds": kinds,
                "n": len(rows),
                "pseudo_fakes": len(reals),
                "results": results,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
