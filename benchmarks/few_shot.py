"""How many confirmed fakes of a new kind does the CLIP expert need to catch the rest?

A trust-and-safety or newsroom team meets a kind of fake the model never saw. It soon has a
few confirmed examples and plenty of its own verified reals, but not the model's training
faces. For each fold of ``benchmarks/loso.py`` the held-out sources' videos are split by a hash
of their name (``reference_reals.group_uniform``): the half with u >= 0.5 is the test half in
every arm; from the other half, per ``--seeds`` seed, ``k`` fake faces (each ``--ks``; one per
video while there are videos left) and ``--reals`` real faces are the team's labelled faces.
The head is the shipped default's CLIP recipe (class + mean tokens of the 12 blocks, L2, clean
view, C 0.003) fitted on the other sources' faces (the leave-one-kind-out head). Arms:

- ``without``: the leave-one-kind-out head as it is;
- ``adapt``: its logit as an offset plus a linear correction fitted on the team's faces alone,
  L2 towards zero, strength by grouped cross-validation
  (:func:`facetrust.train.adapt.fit_offset_head`), then Platt scaling of its out-of-fold
  logits with the classes weighed alike: what ``facetrust adapt`` does;
- ``own``: a head on the team's faces alone (``fit_linear_head``, C by cross-validation);
- ``refit``: the head refitted on the training faces and the team's (a researcher with the
  training data; first seed only, ``--refit-ks``).

Each: AUC on the test half (95 % interval, videos resampled), ECE, and at the threshold that
calls ``--fpr`` of the team's reals fake (their out-of-fold logits for ``adapt`` and ``own``,
so a threshold from faces the head did not train on; the head's own for ``without``) the
shares of test reals called fake and of test fakes caught. The diffusion fold's fakes (sdfd)
and reals (openforensics) are two sources: there the team's faces teach which source is which,
a source cue, not detection.

Usage:

  uv run python benchmarks/few_shot.py --out docs/few-shot.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from facetrust.config import apply_threads
from facetrust.detect.calibration import sigmoid, threshold_for_reals
from facetrust.train.adapt import calibrate_oof, fit_offset_head
from facetrust.train.fusion import fit_linear_head

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import FOLDS, fold_figures  # noqa: E402
from reference_reals import clean_clip_faces, group_uniform  # noqa: E402


def pick(rows: np.ndarray, videos: np.ndarray, k: int, rng) -> np.ndarray:
    """``k`` of ``rows``, one per video (videos in random order) while videos last, then a
    second round, and so on."""
    idx = rng.permutation(len(rows))
    order = rows[idx]
    seen: dict[str, int] = {}
    rank = np.zeros(len(order), np.int64)
    for i, v in enumerate(videos[idx]):
        rank[i] = seen.get(v, 0)
        seen[v] = rank[i] + 1
    return order[np.argsort(rank, kind="stable")[:k]]


def figures(y, z, videos, z_reals_fit) -> dict:
    """AUC (interval), ECE and the rates at the threshold that calls --fpr of the fit's reals
    (their logits ``z_reals_fit``) fake."""
    p = sigmoid(z)
    t = threshold_for_reals(sigmoid(z_reals_fit), ARGS.fpr)["threshold"]
    return {
        **fold_figures(y, p, videos),
        "reals_called_fake": round(float((p[y == 0] >= t).mean()), 4),
        "fakes_caught": round(float((p[y == 1] >= t).mean()), 4),
    }


def own_oof(x, y, groups, c: float) -> np.ndarray:
    """Out-of-fold logits of ``own``'s head (C ``c``), folds as ``fit_offset_head``'s, for a
    threshold it did not train on."""
    from sklearn.model_selection import StratifiedGroupKFold

    k = min(5, *(len(set(groups[y == c])) for c in (0, 1)))
    pred = np.zeros(len(y))
    for tr, te in StratifiedGroupKFold(k, shuffle=True, random_state=0).split(x, y, groups):
        pred[te] = fit_linear_head(x[tr], y[tr], groups[tr], (c,))[0](x[te])
    return pred


def brief(a: dict) -> str:
    return (
        f"AUC {a['auc']:.3f} ({a['auc_ci'][0]:.3f}-{a['auc_ci'][1]:.3f}) ECE {a['ece']:.3f} "
        f"reals called fake {a['reals_called_fake']:.3f} fakes caught {a['fakes_caught']:.3f}"
    )


def mean_of(runs: list[dict]) -> dict:
    keys = ("auc", "ece", "reals_called_fake", "fakes_caught")
    out = {k: round(float(np.mean([r[k] for r in runs])), 4) for k in keys}
    out["auc_sd"] = round(float(np.std([r["auc"] for r in runs])), 4)
    return out


def main() -> None:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ks", default="10,25,50,100,250", help="labelled fakes per run")
    ap.add_argument("--reals", type=int, default=250, help="labelled reals per run (at most)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--refit-ks", default="25,100", help="k for the refit arm ('': none)")
    ap.add_argument("--c", type=float, default=0.003, help="the training head's L2 strength")
    ap.add_argument("--fpr", type=float, default=0.05)
    ap.add_argument("--folds", nargs="*", default=list(FOLDS), choices=list(FOLDS))
    ap.add_argument("--manifest", default="data/shared.jsonl")
    ap.add_argument("--features", default="data/features-shared")
    ap.add_argument("--out", default="")
    ARGS = args = ap.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    refit_ks = [int(k) for k in args.refit_ks.split(",") if k.strip()]
    apply_threads(2)
    rows, x, _, _ = clean_clip_faces(Path(args.manifest), Path(args.features))
    y = np.array([r.y for r in rows])
    src = np.array([r.source for r in rows])
    videos = np.array([r.group("video") for r in rows])
    u = group_uniform(videos)
    out: dict = {}
    for fold in args.folds:
        t0 = time.time()
        in_fold = np.isin(src, FOLDS[fold])
        base = np.flatnonzero(~in_fold)
        test = np.flatnonzero(in_fold & (u >= 0.5))
        pool_f = np.flatnonzero(in_fold & (u < 0.5) & (y == 1))
        pool_r = np.flatnonzero(in_fold & (u < 0.5) & (y == 0))
        yt, vt = y[test], videos[test]
        head, _ = fit_linear_head(x[base], y[base], src[base], (args.c,))
        z0 = head(x)
        res: dict = {
            "test_reals": int((yt == 0).sum()),
            "test_fakes": int((yt == 1).sum()),
            "pool_fake_videos": len(set(videos[pool_f])),
            "pool_reals": len(pool_r),
        }
        res["without"] = figures(yt, z0[test], vt, z0[pool_r])
        print(f"{fold:10s} without        {brief(res['without'])}", flush=True)
        for k in ks:
            if k > len(pool_f):
                continue
            runs: dict[str, list] = {"adapt": [], "own": [], "refit": []}
            for seed in range(args.seeds):
                rng = np.random.default_rng(seed)
                mine = np.concatenate(
                    [pick(pool_f, videos[pool_f], k, rng), rng.permutation(pool_r)[: args.reals]]
                )
                ym, gm = y[mine], videos[mine]
                delta, info = fit_offset_head(z0[mine], x[mine], ym, gm, head.mean, head.scale)
                cal = calibrate_oof(info["oof"], ym)  # as facetrust adapt calibrates
                a, b = cal["a"], cal["b"]
                zt = a * (z0[test] + delta(x[test])) + b
                r = figures(yt, zt, vt, a * info["oof"][ym == 0] + b)
                r["C"] = info["C"]
                runs["adapt"].append(r)
                own, own_info = fit_linear_head(x[mine], ym, gm)
                z_oof = own_oof(x[mine], ym, gm, own_info["C"])
                runs["own"].append(figures(yt, own(x[test]), vt, z_oof[ym == 0]))
                if seed == 0 and k in refit_ks:
                    both = np.concatenate([base, mine])
                    again, _ = fit_linear_head(x[both], y[both], src[both], (args.c,))
                    runs["refit"].append(figures(yt, again(x[test]), vt, again(x[mine][ym == 0])))
                for name in ("adapt", "own", "refit"):
                    if len(runs[name]) == seed + 1:
                        extra = f" C {r['C']:g}" if name == "adapt" else ""
                        print(
                            f"{fold:10s} k={k:<4d} s{seed} {name:6s} {brief(runs[name][-1])}{extra}"
                        )
            res[str(k)] = {n: {"mean": mean_of(v), "runs": v} for n, v in runs.items() if v}
            means = "  ".join(f"{n} {res[str(k)][n]['mean']['auc']:.3f}" for n in res[str(k)])
            print(f"{fold:10s} k={k:<4d} mean AUC  {means}", flush=True)
        out[fold] = res
        print(f"  ({time.time() - t0:.0f} s)", flush=True)
        if args.out:
            meta = {k: v for k, v in vars(args).items() if k != "out"}
            meta["head"] = "CLIP cls+mean, 12 blocks, L2, clean view"
            Path(args.out).write_text(json.dumps({**meta, "results": out}, indent=1) + "\n")


if __name__ == "__main__":
    main()
