"""A CNN trained on reals + pseudo-fakes only: how does it, and a fusion built on it, transfer?

  python benchmarks/pseudo_cnn.py --cnn runs/pseudo-only/final.safetensors \\
      -c configs/pseudo-only.yaml [--manifest data/shared.jsonl] [--per-class 250]

The CNN of ``configs/pseudo-only.yaml`` never sees a real fake, so every kind of fake in the
data is a kind it has not seen: one run measures transfer on all of them. Only reals the CNN
did not train on (its run's val and calib splits) are used as negatives. Printed, and written
to ``docs/pseudo-cnn.json``:

(1) the CNN alone, per leave-one-kind-out fold (benchmarks/loso.py's FOLDS): AUC, and ECE of
    its raw sigmoid (no calibration: its calib split holds real fakes);
(2) real-vs-real control of the CNN: AUC between the held-out reals of every pair of sources;
(3) per fold, a fusion of the CNN with a CLIP head and a frequency head, all fitted without the
    held-out kind, on benchmarks/shortcuts.py's stratified sample: heads on the other kinds'
    faces (the CLIP head also on pseudo-fakes of their reals, ``--clip-pseudo``), the stack on
    out-of-fold logits (each expert scored on kinds its head did not see); AUC and ECE on the
    held-out kind, beside each input alone. The stack is the calibration, so its ECE is an
    honest held-out figure.

Features come from the caches of benchmarks/shortcuts.py run on the CNN alone (``--model
facetrust-fast``, whose CLIP and frequency features are the experts' plain ones: class tokens of
12 blocks; ``data/shortcuts-facetrust-fast.npz``) and benchmarks/pseudo_loso.py (the class tokens in
``data/pseudo-loso-raw-sbi+splice+trace.npz``); extra held-out reals are featurised once
into ``data/pseudo-cnn-extra.npz``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

from facetrust.config import apply_threads
from facetrust.data.manifest import read_crop
from facetrust.detect.scoring import FaceScorer
from facetrust.train.build import select_rows
from facetrust.train.config import load_config
from facetrust.train.fusion import (
    fit_equal_weights,
    fit_linear_head,
    fit_stack,
    oof_head_logits,
    score_rows,
)
from facetrust.train.metrics import ece_score, roc_auc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import FOLDS  # noqa: E402
from pseudo_loso import view  # noqa: E402
from shortcuts import sample  # noqa: E402

SHORTCUTS = Path("data/shortcuts-facetrust-fast.npz")  # shortcuts.py --model facetrust-fast
PSEUDO = Path("data/pseudo-loso-raw-sbi+splice+trace.npz")
EXTRA = Path("data/pseudo-cnn-extra.npz")
LOGITS = Path("data/pseudo-cnn-logits.npz")  # the CNN's logits by crop, for one checkpoint


def _sig(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


# Fusion rules compared in part 3 (inputs: cnn, clip, frequency logits, in that order).
# "stack": logistic regression on the inputs; "mean ...": the inputs divided by their spread
# on the training rows and averaged with equal weights (nothing learnt about which input to
# trust), then one Platt scaling so the output is a probability; "cnn"/"clip": one input,
# Platt-scaled.
RULES = {
    "stack": None,
    "mean cnn+clip": (0, 1),
    "mean all": (0, 1, 2),
    "cnn": (0,),
    "clip": (1,),
}


def _fit_rule(rule: str, z: np.ndarray, y: np.ndarray):
    """Fit ``rule`` on logits ``z`` (N, 3) and labels ``y``: (z -> probability, weights)."""
    cols = [0, 1, 2] if RULES[rule] is None else list(RULES[rule])
    fit = fit_stack if RULES[rule] is None else fit_equal_weights
    w, b = fit(z[:, cols], y)
    return (lambda q: _sig(q[:, cols] @ w + b)), w


class _CnnLogits:
    """The CNN's logits of rows, cached by crop key for one checkpoint (its SHA-256)."""

    def __init__(self, ckpt: str, manifest: Path):
        import hashlib

        self.sha = hashlib.sha256(Path(ckpt).read_bytes()).hexdigest()
        self.scorer = FaceScorer.from_checkpoint(ckpt, batch_size=64)
        self.manifest = manifest
        self.cache: dict[str, float] = {}
        if LOGITS.is_file():
            with np.load(LOGITS) as z:
                if str(z["sha"]) == self.sha:
                    self.cache = dict(zip(z["keys"].tolist(), z["logits"].tolist(), strict=True))

    def __call__(self, rows) -> np.ndarray:
        todo = [r for r in rows if r.crop not in self.cache]
        if todo:
            z = score_rows(self.scorer, todo, self.manifest, cnn_only=True)
            self.cache.update(zip([r.crop for r in todo], z.tolist(), strict=True))
            keys = list(self.cache)
            np.savez(
                LOGITS,
                sha=self.sha,
                keys=np.array(keys),
                logits=np.array([self.cache[k] for k in keys]),
            )
        return np.array([self.cache[r.crop] for r in rows], np.float64)


def _extra_features(rows, manifest: Path) -> dict[str, np.ndarray]:
    """CLIP (12 class tokens) and frequency features of ``rows``, cached by crop key."""
    from facetrust.detect.experts import ClipExpert, FrequencyExpert

    keys = [r.crop for r in rows]
    if EXTRA.is_file():
        with np.load(EXTRA) as z:
            if list(z["keys"]) == keys:
                return {"clip": z["clip"], "frequency": z["frequency"]}
    clip, freq = ClipExpert(), FrequencyExpert()
    parts: dict[str, list] = {"clip": [], "frequency": []}
    t0 = time.time()
    for i in range(0, len(rows), 32):
        crops = [read_crop(manifest, r.crop) for r in rows[i : i + 32]]
        parts["clip"].append(clip.features(crops))
        parts["frequency"].append(freq.features(crops))
        print(f"  extra features {i + len(crops)}/{len(rows)} ({time.time() - t0:.0f} s)")
    out = {k: np.concatenate(v) for k, v in parts.items()}
    np.savez(EXTRA, keys=np.array(keys), **out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cnn", required=True, help="the pseudo-only CNN checkpoint")
    ap.add_argument("-c", "--config", required=True, help="its training config (for its splits)")
    ap.add_argument("--manifest", default="data/shared.jsonl")
    ap.add_argument("--per-class", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clip-pseudo", action="store_true", help="CLIP head also on pseudo-fakes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="docs/pseudo-cnn.json")
    args = ap.parse_args()
    apply_threads(args.threads)
    manifest = Path(args.manifest)
    cfg = load_config(args.config, [f"data.train_manifest={manifest}"])
    splits = select_rows(cfg)
    held_reals = {r.crop for s in ("val", "calib") for r in splits[s] if r.label == "real"}
    rows_all = [r for s in splits.values() for r in s]
    cnn = _CnnLogits(args.cnn, manifest)
    results: dict = {"cnn": args.cnn, "config": args.config}

    # (1) the CNN alone on every fake and on the reals it did not train on
    test = [r for r in rows_all if r.label == "fake" or r.crop in held_reals]
    t0 = time.time()
    z = cnn(test)
    print(f"CNN scored {len(test)} faces in {time.time() - t0:.0f} s")
    y = np.array([r.y for r in test])
    src = np.array([r.source for r in test])
    alone = {}
    for fold, held in FOLDS.items():
        m = np.isin(src, held)
        if len(np.unique(y[m])) < 2:
            continue
        alone[fold] = {
            "auc": round(roc_auc(y[m], _sig(z[m])), 4),
            "ece_raw": round(ece_score(y[m], _sig(z[m])), 4),
            "reals": int((y[m] == 0).sum()),
            "fakes": int((y[m] == 1).sum()),
        }
    alone["all"] = {"auc": round(roc_auc(y, _sig(z)), 4)}
    results["cnn_alone"] = alone
    print("\n(1) CNN alone (never saw a real fake): AUC / raw ECE per held-out kind")
    for k, v in alone.items():
        print(f"  {k:10s} {v['auc']:.3f}" + (f" / {v['ece_raw']:.3f}" if "ece_raw" in v else ""))

    # (2) real-vs-real control
    rv = {}
    reals = y == 0
    for a, b in combinations(sorted(set(src[reals])), 2):
        ma, mb = reals & (src == a), reals & (src == b)
        if ma.sum() < 20 or mb.sum() < 20:
            continue
        yy = np.r_[np.zeros(ma.sum()), np.ones(mb.sum())]
        rv[f"{a}|{b}"] = round(roc_auc(yy, _sig(np.r_[z[ma], z[mb]])), 3)
    results["real_vs_real"] = rv
    off = {k: v for k, v in rv.items() if not 0.4 <= v <= 0.6}
    print(f"\n(2) real-vs-real (CNN logits): {len(off)}/{len(rv)} pairs outside 0.40-0.60")
    for k, v in rv.items():
        print(f"  {k:28s} {v:.3f}")

    # (3) fusion per fold on the shortcuts sample (+ extra held-out reals)
    from facetrust.data.manifest import read_manifest

    srows = sample(read_manifest(manifest), args.per_class, args.seed)
    with np.load(SHORTCUTS) as zs:
        assert list(zs["keys"]) == [r.crop for r in srows], "shortcuts cache is of another sample"
        clip, freq = zs["clip"], zs["frequency"]
    in_sample = {r.crop for r in srows}
    fold_sources = {s for held in FOLDS.values() for s in held}
    extra = [
        r
        for r in rows_all
        if r.crop in held_reals and r.source in fold_sources and r.crop not in in_sample
    ]
    ex = _extra_features(extra, manifest)
    rows = srows + extra
    clip = np.concatenate([clip, ex["clip"]])
    freq = np.concatenate([freq, ex["frequency"]])
    zc = cnn(srows + extra)
    y = np.array([r.y for r in rows])
    src = np.array([r.source for r in rows])
    # the CNN's own training reals are not fair negatives anywhere its logit is used
    cnn_fair = np.array([r.label == "fake" or r.crop in held_reals for r in rows])
    xp = None
    if args.clip_pseudo:
        with np.load(PSEUDO) as zp:
            assert list(zp["keys"]) == [r.crop for r in srows]
            xp = view(zp["xp"], "cls", l2=False)
        sreals = [i for i, r in enumerate(srows) if r.label == "real" and r.landmarks]
        src_p = src[sreals]
    fused = {}
    for fold, held in FOLDS.items():
        te = np.isin(src, held) & cnn_fair
        if len(np.unique(y[te])) < 2:
            continue
        tr = ~np.isin(src, held)
        inner = {k: v for k, v in FOLDS.items() if k != fold}

        cols_tr, cols_te = [zc[tr]], [zc[te]]
        for x, with_pseudo in ((clip, True), (freq, False)):
            hx, hy, hg = [x[tr]], [y[tr]], [src[tr]]
            if with_pseudo and xp is not None:
                keep = ~np.isin(src_p, held)
                hx.append(xp[keep])
                hy.append(np.ones(int(keep.sum()), np.int64))
                hg.append(src_p[keep])
            hx, hy, hg = np.concatenate(hx), np.concatenate(hy), np.concatenate(hg)
            head, info = fit_linear_head(hx, hy, hg)
            cols_te.append(head(x[te]))
            # out-of-fold on the training kinds: each inner kind scored by a head without it
            oof = oof_head_logits([x[tr]], y[tr], src[tr], inner, c=float(info["C"]))
            cols_tr.append(oof)
        ztr, zte = np.stack(cols_tr, 1), np.stack(cols_te, 1)
        ok = ~np.isnan(ztr).any(1) & cnn_fair[tr]
        res = {"reals": int((y[te] == 0).sum()), "fakes": int((y[te] == 1).sum())}
        for name, col in zip(("cnn", "clip", "frequency"), zte.T, strict=True):
            res[f"{name}_auc"] = round(roc_auc(y[te], _sig(col)), 4)
        # every fusion rule, fitted on the out-of-fold logits of the training kinds only
        zo, yo, so = ztr[ok], y[tr][ok], src[tr][ok]
        rules, fitted = {}, {}
        for rule in RULES:
            fz, fitted[rule] = _fit_rule(rule, zo, yo)
            p = fz(zte)
            rules[rule] = {"auc": round(roc_auc(y[te], p), 4), "ece": round(ece_score(y[te], p), 4)}
        # the rule chosen for transfer without looking at the held-out kind: the best mean AUC
        # over the inner kinds, each scored by the rule fitted on the other inner kinds
        inner_auc = {}
        for rule in RULES:
            aucs = []
            for held_in in inner.values():
                m = np.isin(so, held_in)
                if len(np.unique(yo[m])) < 2:
                    continue
                fz, _ = _fit_rule(rule, zo[~m], yo[~m])
                aucs.append(roc_auc(yo[m], fz(zo[m])))
            inner_auc[rule] = round(float(np.mean(aucs)), 4)
        chosen = max(inner_auc, key=inner_auc.get)
        res.update(
            rules=rules,
            inner_auc=inner_auc,
            chosen=chosen,
            fused_auc=rules["stack"]["auc"],
            fused_ece=rules["stack"]["ece"],
            chosen_auc=rules[chosen]["auc"],
            chosen_ece=rules[chosen]["ece"],
            weights=[round(float(v), 3) for v in fitted["stack"]],
        )
        fused[fold] = res
    results["fused"] = fused
    print("\n(3) per held-out kind: each input alone, stack weights (cnn, clip, freq)")
    for k, v in fused.items():
        print(
            f"  {k:10s} cnn {v['cnn_auc']:.3f}  clip {v['clip_auc']:.3f}  "
            f"freq {v['frequency_auc']:.3f}  weights {v['weights']}  {v['reals']}+{v['fakes']}"
        )
    print("\n    fusion rules (fitted on out-of-fold logits of the training kinds): AUC / ECE")
    print(f"  {'rule':16s}" + "".join(f"{k:>16s}" for k in fused) + "      mean  worst")
    for rule in RULES:
        vals = [v["rules"][rule] for v in fused.values()]
        aucs = [r["auc"] for r in vals]
        print(
            f"  {rule:16s}"
            + "".join(f"   {r['auc']:.3f} / {r['ece']:.3f}" for r in vals)
            + f"     {np.mean(aucs):.3f}  {min(aucs):.3f}"
        )
    chosen = [(v["chosen"], v["chosen_auc"], v["chosen_ece"]) for v in fused.values()]
    print(
        f"  {'chosen (inner)':16s}"
        + "".join(f"  {c[:6]:>6s} {a:.3f}/{e:.3f}" for c, a, e in chosen)
        + f"     {np.mean([a for _, a, _ in chosen]):.3f}  {min(a for _, a, _ in chosen):.3f}"
    )
    for key in ("cnn_auc", "clip_auc", "frequency_auc", "chosen_auc"):
        vals = [v[key] for v in fused.values()]
        print(f"  mean {key:14s} {np.mean(vals):.3f}  worst {min(vals):.3f}")
    results["fused_mean"] = round(float(np.mean([v["fused_auc"] for v in fused.values()])), 4)
    results["chosen_mean"] = round(float(np.mean([v["chosen_auc"] for v in fused.values()])), 4)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
