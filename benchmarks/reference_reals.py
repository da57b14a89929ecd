"""Does the CLIP expert transfer to a new source once it has seen that source's *reals*?

A trust-and-safety or newsroom team meets a new kind of fake on its own platform, but it has
plenty of that platform's known-real images. For each fold of ``benchmarks/loso.py`` (face
swap, composite, GAN, diffusion) the held-out sources' videos are split by a hash of their
group: those with u >= 0.5 are the test half, whatever the arm; the reals of those with
u < f (each ``--fractions`` f, at most 0.5) are the *reference reals* an arm may train on. The
CLIP head is the shipped default's recipe (class + mean patch tokens of the 12 blocks, L2 per
block, clean view, C 0.003, ``facetrust fuse``'s head fitting), fitted on the other sources'
faces and, per arm:

- ``without``: nothing more (the leave-one-kind-out head, scored on the test half);
- ``twins``: one pseudo-fake twin (``--pseudo``: SBI blends, splices, traces, made as
  ``facetrust fuse --pseudo`` makes them) of every training real, labelled fake
  (``fuse --pseudo``'s head; the control for the arms with the reference's twins);
- ``threshold``: the ``without`` head, its threshold moved to the one that calls ``--fpr`` of
  the reference reals fake, by ``facetrust threshold``'s own rule
  (:func:`~facetrust.detect.calibration.threshold_for_reals`, whose promised interval for the
  unseen reals' rate is kept beside the rate found): no refit, what a team can do with the
  shipped model;
- ``reals``: the reference reals, labelled real;
- ``reals+twins``: those and their twins, labelled fake, so the head gets a contrast inside
  the new source without one of its fakes;
- ``all``: ``twins`` and ``reals+twins`` together;
- ``own``: a head on the reference reals and their twins alone (no training data: what a
  team can fit beside the shipped model, whose training faces it does not have);
- ``own+shipped``: the ``without`` and ``own`` logits, each scaled by its spread over the
  reference reals and averaged.
``own`` and ``own+shipped`` give uncalibrated scores: their rates are at the threshold that
calls ``--fpr`` of the reference reals fake (for ``own``, reals it trained on), no ECE.
``--threshold-only`` fits the ``without`` head alone and gives that and ``threshold`` (~5 min);
``--folds`` runs only the folds named.

Each arm: AUC on the test half (95 % interval, videos resampled), ECE, the share of the test
reals called fake and of the test fakes caught at or above 0.5 (the moved threshold for
``threshold``). The twins of every real are extracted once into ``<features>-reference``
(clean view, ~9 min on 2 cores of a Xeon with AMX); the faces' clean features come from the
``clip_probe_loso.py`` cache (made on first use, ~11 min for the clean view there).
The diffusion fold's fakes (sdfd) and reals (openforensics) are two sources, so there the
reference reals teach which source is real: its gains are a source cue, not detection.

Usage:

  uv run python benchmarks/reference_reals.py --out docs/reference-reals.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from facetrust.config import apply_threads
from facetrust.data.manifest import read_manifest
from facetrust.detect.calibration import sigmoid, threshold_for_reals
from facetrust.detect.experts import ClipExpert
from facetrust.train.features import VIEWS, extract_features
from facetrust.train.fusion import (
    fit_linear_head,
    fusion_spec,
    parse_clip_layers,
    parse_pseudo,
    twin_features,
    widest_experts,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import FOLDS, fold_figures  # noqa: E402


def group_uniform(groups: np.ndarray) -> np.ndarray:
    """A number in [0, 1) per row, the same for every row of a group (a hash of its name), so
    a split by it keeps each video on one side and is the same in every run."""
    return np.array([zlib.crc32(g.encode()) / 2**32 for g in groups])


def clean_clip_faces(manifest: Path, features: Path):
    """``(rows, x, expert, spec)``: the manifest's faces with crops and their clean-view CLIP
    features of the shipped recipe (class + mean tokens of 12 blocks, L2), from the feature
    cache ``features`` (made on first use)."""
    rows = [r for r in read_manifest(manifest) if r.crop]
    spec = fusion_spec("clip,frequency", clip_pool="cls+mean", clip_l2=True)
    table = extract_features(rows, manifest, features, widest_experts(spec), views=VIEWS[:1])
    expert = ClipExpert(layers=parse_clip_layers("all"), pool="cls+mean", l2=True)
    return rows, table.get(expert, "clean", table.rows(rows)), expert, spec


def arm_figures(y, p, videos, threshold: float = 0.5, ece: bool = True) -> dict:
    """AUC (interval), ECE (None without ``ece``: scores, not probabilities) and the shares of
    reals called fake and of fakes caught at or above ``threshold`` (``detect``'s rule)."""
    return {
        **fold_figures(y, p, videos),
        **({} if ece else {"ece": None}),
        "reals_called_fake": round(float((p[y == 0] >= threshold).mean()), 4),
        "fakes_caught": round(float((p[y == 1] >= threshold).mean()), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--fractions", default="0.1,0.5", help="reference shares of the videos")
    ap.add_argument("--pseudo", default="sbi,splice,trace", help="the twins' kinds ('': none)")
    ap.add_argument("--c", type=float, default=0.003, help="the head's L2 strength")
    ap.add_argument("--fpr", type=float, default=0.05, help="reference reals called fake")
    ap.add_argument(
        "--threshold-only", action="store_true", help="the without and threshold arms alone"
    )
    ap.add_argument("--folds", nargs="*", default=list(FOLDS), choices=list(FOLDS))
    ap.add_argument("--manifest", default="data/shared.jsonl")
    ap.add_argument("--features", default="data/features-shared")
    ap.add_argument("--out", default="", help="write the figures as JSON")
    args = ap.parse_args()
    fractions = sorted(float(f) for f in args.fractions.split(","))
    if not fractions or fractions[0] <= 0 or fractions[-1] > 0.5:
        ap.error("--fractions: shares in (0, 0.5]; the test half is u >= 0.5")
    apply_threads(2)
    manifest, views = Path(args.manifest), VIEWS[:1]
    rows, x, expert, spec = clean_clip_faces(manifest, Path(args.features))
    y = np.array([r.y for r in rows])
    src = np.array([r.source for r in rows])
    videos = np.array([r.group("video") for r in rows])
    u = group_uniform(videos)
    twins = twin_rows = None
    if args.pseudo and not args.threshold_only:  # one twin per real, from its source's reals
        kinds = parse_pseudo(args.pseudo)
        experts = [e for e in widest_experts(spec) if isinstance(e, ClipExpert)]
        where = Path(args.features + "-reference")
        made, t_table = twin_features(rows, manifest, where, kinds, experts, views=views)
        twins = t_table.get(expert, "clean", t_table.rows(made))
        row_of = {r.crop: i for i, r in enumerate(rows)}
        twin_rows = np.array([row_of[r.crop] for r in made])

    def fit(train, twins_of=()):
        """The head on the faces ``train`` and the twins of the reals ``twins_of``."""
        xt, yt, gt = x[train], y[train], src[train]
        if len(twins_of):
            mine = np.isin(twin_rows, twins_of)
            xt = np.concatenate([xt, twins[mine]])
            yt = np.concatenate([yt, np.ones(int(mine.sum()), np.int64)])
            gt = np.concatenate([gt, src[twin_rows[mine]]])
        head, _ = fit_linear_head(xt, yt, gt, (args.c,))
        return head

    out: dict = {}
    for fold in args.folds:
        t0, sources = time.time(), FOLDS[fold]
        in_fold = np.isin(src, sources)
        base = np.flatnonzero(~in_fold)
        test = np.flatnonzero(in_fold & (u >= 0.5))
        yt, vt = y[test], videos[test]
        head = fit(base)
        z_test = head(x[test])
        res = {"test_reals": int((yt == 0).sum()), "test_fakes": int((yt == 1).sum())}
        res["without"] = arm_figures(yt, sigmoid(z_test), vt)
        print(f"{fold:10s} without            {brief(res['without'])}", flush=True)
        if twins is not None:
            p = sigmoid(fit(base, base)(x[test]))
            res["twins"] = arm_figures(yt, p, vt)
            print(f"{fold:10s} twins              {brief(res['twins'])}", flush=True)
        z_base = head(x)
        for f in fractions:
            ref = np.flatnonzero(in_fold & (y == 0) & (u < f))
            arms: dict = {"reference_reals": len(ref)}
            # the shipped head, its threshold moved to call --fpr of the reference reals fake
            t = threshold_for_reals(sigmoid(z_base[ref]), args.fpr)
            arms["threshold"] = {
                **arm_figures(yt, sigmoid(z_test), vt, t["threshold"]),
                "threshold": t["threshold"],
                "promised": [round(v, 4) for v in t["expected"]],
            }
            if args.threshold_only:
                print(f"{fold:10s} {f:.2f} {len(ref):4d} threshold   {brief(arms['threshold'])}")
                print(f"{'':16s}promised {t['expected'][0]:.3f}-{t['expected'][1]:.3f}")
                res[f"{f:g}"] = arms
                continue
            p = sigmoid(fit(np.concatenate([base, ref]))(x[test]))
            arms["reals"] = arm_figures(yt, p, vt)
            if twins is not None:
                p = sigmoid(fit(np.concatenate([base, ref]), ref)(x[test]))
                arms["reals+twins"] = arm_figures(yt, p, vt)
                both = np.concatenate([base, ref])
                arms["all"] = arm_figures(yt, sigmoid(fit(both, both)(x[test])), vt)
                own = fit(ref, ref)
                z_own, z_ref = own(x[test]), own(x[ref])
                # scores, not probabilities: the (1 - fpr) quantile of the reference reals'
                cut = float(sigmoid(np.quantile(z_ref, 1 - args.fpr)))
                arms["own"] = arm_figures(yt, sigmoid(z_own), vt, cut, ece=False)
                base_ref = z_base[ref]
                z_mix = (z_test - base_ref.mean()) / base_ref.std() + (
                    z_own - z_ref.mean()
                ) / z_ref.std()
                z_mix_ref = (base_ref - base_ref.mean()) / base_ref.std() + (
                    z_ref - z_ref.mean()
                ) / z_ref.std()
                cut = float(sigmoid(np.quantile(z_mix_ref, 1 - args.fpr)))
                arms["own+shipped"] = arm_figures(yt, sigmoid(z_mix), vt, cut, ece=False)
            for name in ("threshold", "reals", "reals+twins", "all", "own", "own+shipped"):
                if name in arms:
                    print(f"{fold:10s} {f:.2f} {len(ref):4d} {name:11s} {brief(arms[name])}")
            res[f"{f:g}"] = arms
        out[fold] = res
        print(f"  ({time.time() - t0:.0f} s)", flush=True)
    if args.out:
        meta = {"pseudo": args.pseudo, "C": args.c, "fpr": args.fpr, "fractions": fractions}
        meta["threshold_only"], meta["folds"] = args.threshold_only, args.folds
        meta["head"] = "CLIP cls+mean, 12 blocks, L2, clean view"
        Path(args.out).write_text(json.dumps({**meta, "results": out}, indent=1) + "\n")


def brief(a: dict) -> str:
    lo, hi = a["auc_ci"] or (float("nan"), float("nan"))
    return (
        f"AUC {a['auc']:.3f} ({lo:.3f}-{hi:.3f}) ECE {a['ece'] or float('nan'):.3f} "
        f"reals called fake {a['reals_called_fake']:.3f} fakes caught {a['fakes_caught']:.3f}"
    )


if __name__ == "__main__":
    main()
