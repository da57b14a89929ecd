"""Leave-one-source-out generalisation: train without one fake kind, test on it.

Each fold holds out the sources of one kind of fake (and, for sources that have no reals,
a real-only source of similar resolution as the negatives), trains with the given config,
and prints the AUC on the held-out data, with its 95 % bootstrap interval (whole videos
resampled: the spread of the held-out faces, not of the training run). Usage:

  python benchmarks/loso.py -c configs/default.yaml [key=value ...] [--folds face_swap gan]

With ``--fuse clip,frequency`` each fold's CNN is then fused with those frozen experts (heads
fitted without the held-out sources, as ``facetrust fuse`` does) and the fused model and each
input alone are scored on the held-out data; ``--features`` is the shared feature cache.
``--stack oof`` fits each fused fold's stack out of fold (``facetrust fuse --fold``'s stack):
on the faces of the *other* folds, each scored by its own fold's CNN (``<out>/<fold>/``, trained
earlier) and by heads fitted without it, so the stack learns how far each input transfers to a
kind it did not see, and never sees the held-out kind; folds whose CNN has not finished are
left out of the stack (printed, and listed as ``stack_folds`` in the JSON). A fold whose run
holds ``best.safetensors`` (written when training ends) is not trained again; one cut short
resumes from ``state.pt``.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

from facetrust.models import read_checkpoint_meta
from facetrust.train.config import load_config
from facetrust.train.loop import Trainer
from facetrust.train.metrics import auc_text

FOLDS = {
    "face_swap": ["dfdc"],
    "composite": ["yonsei"],
    "gan": ["gan140k", "stylegan2small"],
    "diffusion": ["sdfd", "openforensics"],  # openforensics reals are the negatives
}


def fold_figures(y, p, clusters) -> dict:
    """A held-out fold's AUC with its 95 % interval (``clusters``: whole videos resampled), ECE
    and size, rounded as the benchmarks write them."""
    from facetrust.train.metrics import auc_interval, ece_score, roc_auc

    ci = auc_interval(y, p, clusters=clusters)
    return {
        "auc": round(roc_auc(y, p), 4),
        "auc_ci": None if ci is None else [round(c, 4) for c in ci],
        "ece": round(float(ece_score(y, p)), 4),
        "n": int(len(y)),
    }


def by_fake_source(y, src, p) -> dict:
    """For scored rows (a fold's held-out ones, a val split: labels, sources, probabilities)
    with more than one fake source: each source's fakes against all their reals,
    ``{source: {"auc", "fakes"}}`` (printed); ``{}`` with one fake source."""
    import numpy as np

    from facetrust.train.metrics import roc_auc

    y, src, p = np.asarray(y), np.asarray(src), np.asarray(p)
    fakes = sorted(set(src[y == 1]))
    out = {}
    for s in fakes if len(fakes) > 1 else []:
        keep = (y == 0) | (src == s)
        out[str(s)] = {
            "auc": round(roc_auc(y[keep], p[keep]), 4),
            "fakes": int(np.sum(src[y == 1] == s)),
        }
        print(f"    {s} fakes vs the reals: AUC {out[str(s)]['auc']:.3f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-c", "--config", required=True)
    ap.add_argument("--folds", nargs="*", default=list(FOLDS))
    ap.add_argument("--out", default="runs/loso")
    ap.add_argument("--fuse", default="", help="experts to fuse per fold, e.g. clip,frequency")
    ap.add_argument("--clip-layers", default="all")
    ap.add_argument("--clip-pool", default="cls", help="cls or cls+mean (facetrust fuse's)")
    ap.add_argument("--clip-l2", action="store_true", help="L2 per block (facetrust fuse's)")
    ap.add_argument("--clip-size", type=int, default=224, help="CLIP input side (fuse's)")
    ap.add_argument("--pseudo", default="", help="pseudo-fake twins for the heads, e.g. sbi,trace")
    ap.add_argument("--weights", default="learned", help="the stack: learned or equal")
    ap.add_argument("--balance", action="store_true", help="heads weigh (source, label) alike")
    ap.add_argument("--views", default="both", help="heads' views: both, clean or routed")
    ap.add_argument("--c", default=None, help="heads' C: 0.003 or clip=0.0003,... (default: CV)")
    ap.add_argument(
        "--stack",
        default="calib",
        choices=["calib", "oof"],
        help="fit the fused stack on the calib split, or out of fold: on the other folds' "
        "held-out faces, each scored by that fold's CNN (<out>/<fold>/best.safetensors) and "
        "heads fitted without it (folds without a trained CNN are left out of the stack)",
    )
    ap.add_argument("--features", default="data/features-shared")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    unknown = [f for f in args.folds if f not in FOLDS]
    if unknown:  # e.g. overrides swallowed by --folds: put them before it
        ap.error(f"unknown fold(s) {unknown}; folds are {list(FOLDS)}")
    # fused runs are named by their experts and CLIP blocks, so runs of other blocks stay
    tag = args.fuse.replace(",", "-")
    if "clip" in args.fuse.split(","):
        tag += "-L" + args.clip_layers.replace(",", ".")
        tag += "-mean" * (args.clip_pool == "cls+mean") + "-l2" * args.clip_l2
        tag += f"-px{args.clip_size}" * (args.clip_size != 224)
    tag += f"-P{args.pseudo.replace(',', '.').replace(':', '')}" * bool(args.pseudo)
    tag += "-eq" * (args.weights == "equal") + "-bal" * args.balance
    tag += f"-{args.views}" * (args.views != "both")
    if args.c is not None:
        tag += "-C" + args.c.replace("=", "").replace(",", ".")
    tag += "-oof" * (args.stack == "oof")
    if args.stack == "oof" and not args.fuse:
        ap.error("--stack oof fits a fused model's stack: name the experts with --fuse")
    if args.fuse:  # refused before any fold trains
        from facetrust.train.fusion import fusion_spec, run_fusion

        make_spec = partial(
            fusion_spec,
            args.fuse,
            clip_layers=args.clip_layers,
            clip_pool=args.clip_pool,
            clip_l2=args.clip_l2,
            clip_size=args.clip_size,
            weights=args.weights,
            pseudo=args.pseudo,
            balance=args.balance,
            views=args.views,
            c=args.c,
        )
        spec = make_spec()
    results = {}
    for fold in args.folds:
        held = FOLDS[fold]
        out = Path(args.out) / fold
        cfg = load_config(
            args.config,
            [
                *args.overrides,
                f"output={out}",
                f"data.leave_out={json.dumps(held)}",
                f"name=loso-{fold}",
            ],
        )
        if (out / "best.safetensors").is_file():  # fold finished earlier: reuse its figures
            metrics = read_checkpoint_meta(out / "best.safetensors").metrics
        else:
            resume = (out / "state.pt").is_file()
            metrics = Trainer(cfg, progress=False).run(resume=resume).metrics
        stacked_on = []
        if args.fuse and args.stack == "oof":  # the other folds' CNNs score their own kinds
            others = {f: Path(args.out) / f / "best.safetensors" for f in FOLDS if f != fold}
            stacked_on = [f for f, ckpt in others.items() if ckpt.is_file()]  # written last
            if not stacked_on:
                raise SystemExit(f"--stack oof: no other fold's CNN in {args.out} to stack {fold}")
            spec = make_spec(folds=[f"{f}={','.join(FOLDS[f])}:{others[f]}" for f in stacked_on])
            print(f"{fold:10s} stack fitted out of fold on: {', '.join(stacked_on)}", flush=True)
        if args.fuse:
            fused = out / f"fused-{tag}.safetensors"
            metrics = run_fusion(
                cfg, out / "best.safetensors", Path(args.features), fused, spec, log=lambda s: None
            )
            print(
                f"{fold:10s} AUC per input on the held-out data: {metrics['auc_per_input']['test']}"
            )
        test = metrics["test"]["face"]
        val = metrics["val"]["face"]
        results[fold] = {
            "held_out": held,
            "test_auc": test["auc"],
            "test_auc_ci": test.get("auc_ci"),  # 95 %, whole videos resampled
            "test_ece": test["ece"],
            "test_n": test["n"],
            "val_auc": val["auc"],
        }
        if args.fuse:
            results[fold]["auc_per_input"] = metrics["auc_per_input"].get("test")
            results[fold]["val_ece"] = val["ece"]
        if stacked_on:
            results[fold]["stack_folds"] = stacked_on
            results[fold]["oof_auc_per_input"] = metrics["fusion_fit"]["oof"]
        print(
            f"{fold:10s} held out {'+'.join(held):28s} n={test['n']:5d} "
            f"{auc_text(test)}  ECE {test['ece']:.3f}  (in-distribution val AUC "
            f"{val['auc']:.3f})",
            flush=True,
        )
    aucs = [r["test_auc"] for r in results.values() if r["test_auc"] is not None]
    if aucs:
        print(f"mean leave-one-source-out AUC {sum(aucs) / len(aucs):.3f} over {len(aucs)} folds")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    name = f"loso-fused-{tag}.json" if args.fuse else "loso.json"
    (Path(args.out) / name).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
