"""Can one calibration be right on kinds of fake seen in training *and* on a new kind?

  python benchmarks/calibration_transfer.py [--kinds sbi,splice,trace] [--view clsmean-l2]
                                            [--c 0.01] [--in-dist 0.2] [--photos] [--out JSON]

The head of benchmarks/pseudo_loso.py (setup B: real fakes of the training kinds + pseudo-fake
twins of their reals, frozen CLIP tokens of ``--view``), per leave-one-kind-out fold, with a
share of the training kinds' videos/images (``--in-dist``, seeded) kept out of every fit. Its
logits are calibrated four ways, and each is scored on the held-out kind (a kind it never saw)
*and* on those kept-out faces of the kinds it saw (in-distribution):

  head       the logistic head's own probabilities (fitted on its training rows)
  oof        Platt scaling fitted on inner leave-one-kind-out logits: each training kind scored
             by a head that did not see it (pseudo_loso.py --oof-platt)
  oof+seen   Platt scaling fitted on those logits and on cross-fitted logits of the training
             kinds (3 folds by video/image), the two halves weighed alike
  novelty    the same rows, but the slope depends on how unlike the training rows a face is:
             logit = a z + c z u + e u + b, u = the mean cosine distance (over blocks) to the
             ``--k`` nearest training rows, standardised

Prints held-out AUC / ECE and in-distribution AUC / ECE per fold and calibration (an ECE whose
probabilities crowd into one or two bins is marked ``*``: ``ece_summary`` calls it not
meaningful), and how well the novelty score alone tells the held-out kind from the kept-out
faces of the seen ones (AUC); with ``--photos``, how the novelty of ordinary real photos from
outside the training sources (benchmarks/real_photos.py's group photos) compares with the seen
faces'. Writes docs/calibration-transfer.json. The CLIP tokens come from
pseudo_loso.py's cache in data/ (made on first use, ~17 min per mix on 2 cores); the fits take
~8 min.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from facetrust.config import apply_threads
from facetrust.data.manifest import read_manifest
from facetrust.train.fusion import fit_stack
from facetrust.train.metrics import ece_summary, roc_auc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pseudo_loso as pl  # noqa: E402
from loso import FOLDS  # noqa: E402
from shortcuts import sample  # noqa: E402

CALIBRATIONS = ("head", "oof", "oof+seen", "novelty")


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(z, -50, 50)))


def novelty(
    ref: np.ndarray,
    q: np.ndarray,
    k: int,
    blocks: int,
    groups: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Mean cosine distance of each row of ``q`` to its ``k`` nearest rows of ``ref`` (both
    per-block L2-normalised: a dot product is the sum of ``blocks`` cosines). ``groups``
    (``q``'s, ``ref``'s): a row's neighbours are never rows of its own group."""
    out = []
    for i in range(0, len(q), 512):
        sim = q[i : i + 512] @ ref.T / blocks
        if groups is not None:
            sim[groups[0][i : i + 512, None] == groups[1][None, :]] = -np.inf
        out.append(1 - (-np.partition(-sim, k - 1, axis=1)[:, :k]).mean(1))
    return np.concatenate(out)


def scored(labels: np.ndarray, p: np.ndarray) -> dict:
    """AUC, ECE and whether that ECE is meaningful (``ece_summary``'s note)."""
    e = ece_summary(labels, p)
    auc = round(roc_auc(labels, p), 4)
    return {"auc": auc, "ece": round(e["ece"], 4), "ece_note": e["ece_note"]}


def novelty_terms(z: np.ndarray, u: np.ndarray, mu: float, sd: float) -> np.ndarray:
    """The novelty calibration's inputs: the logit, the logit times the standardised novelty,
    and the standardised novelty."""
    un = (u - mu) / sd
    return np.c_[z, z * un, un]


def fit_weighted_logistic(f: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Unregularised logistic regression of ``y`` on the columns of ``f``, rows weighed by ``w``."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6, max_iter=1000).fit(f, y, sample_weight=w)
    return lambda g: lr.decision_function(g)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--manifest", default="data/shared.jsonl")
    ap.add_argument("--per-class", type=int, default=250)
    ap.add_argument("--kinds", default="sbi,splice,trace")
    ap.add_argument("--view", default="clsmean-l2")
    ap.add_argument("--c", type=float, default=0.01, help="the heads' regularisation strength")
    ap.add_argument("--in-dist", type=float, default=0.2, help="share of videos/images kept out")
    ap.add_argument("--k", type=int, default=10, help="neighbours of the novelty score")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--photos",
        action="store_true",
        help="also the novelty of the faces of benchmarks/real_photos.py's real group photos "
        "against every sample face, beside the seen faces' own (each without its video/image)",
    )
    ap.add_argument("--out", default="docs/calibration-transfer.json")
    args = ap.parse_args()
    if not 0 < args.in_dist < 1:
        ap.error("--in-dist must lie between 0 and 1")
    apply_threads(args.threads)
    pl.C_GRID = (args.c,)
    v = pl.parse_view(args.view)
    if not v.l2 or v.norm or v.ens or v.inlp:
        ap.error("--view must be POOL-l2 (the novelty score reads per-block unit vectors)")
    manifest = Path(args.manifest)
    rows = sample(read_manifest(manifest), args.per_class, args.seed)
    reals = [i for i, r in enumerate(rows) if r.label == "real" and r.landmarks]
    kinds = [k for k in args.kinds.split(",") if k]
    raw = pl.features(manifest, rows, reals, kinds, args.seed)
    x, d = pl.view_data(raw, rows, reals, v)  # float32, as view() gives
    xp, y, src, twin = d.xp, d.y, d.src, d.twin
    groups = np.array([r.video_id or r.path for r in rows])
    nb = len(v.blocks)

    rng = np.random.default_rng([args.seed, 7])
    ug = np.unique(groups)
    kept_out = np.isin(groups, rng.choice(ug, int(len(ug) * args.in_dist), replace=False))
    twin_kept_out = kept_out[twin]

    def fit(tr: np.ndarray, keep: np.ndarray):
        head = pl.fit_setup("B", d, tr, keep, v)
        ref = np.concatenate([x[tr], xp[keep]])
        return head, lambda q: novelty(ref, q, args.k, nb)

    results: dict = {}
    t0 = time.time()
    for fold, held in FOLDS.items():
        te = np.isin(src, held)
        tr = ~te & ~kept_out
        keep = ~np.isin(d.src_p, held) & ~twin_kept_out
        seen = ~te & kept_out  # faces of the training kinds that no fit saw
        head, nov = fit(tr, keep)
        # calibration rows: new kinds (inner leave-one-kind-out) and seen kinds (cross-fitted)
        z_new, u_new, y_new = [], [], []
        for inner, srcs in FOLDS.items():
            inside = tr & np.isin(src, srcs)
            if inner == fold or len(np.unique(y[inside])) < 2:
                continue
            h, n = fit(tr & ~inside, keep & ~np.isin(d.src_p, srcs))
            z_new.append(h(x[inside]))
            u_new.append(n(x[inside]))
            y_new.append(y[inside])
        z_seen, u_seen, y_seen = [], [], []
        tg = np.unique(groups[tr])
        third = np.random.default_rng([args.seed, 8]).permutation(len(tg)) % 3
        for j in range(3):
            hold = tr & np.isin(groups, tg[third == j])
            h, n = fit(tr & ~hold, keep & ~hold[twin])
            z_seen.append(h(x[hold]))
            u_seen.append(n(x[hold]))
            y_seen.append(y[hold])
        zn, un, yn = map(np.concatenate, (z_new, u_new, y_new))
        zs, us, ys = map(np.concatenate, (z_seen, u_seen, y_seen))
        z_all, u_all, y_all = np.r_[zn, zs], np.r_[un, us], np.r_[yn, ys]
        w_all = np.r_[np.full(len(zn), 0.5 / len(zn)), np.full(len(zs), 0.5 / len(zs))]
        mu, sd = float(u_all.mean()), float(u_all.std()) or 1.0

        (a,), b = fit_stack(zn[:, None], yn)
        mixed = fit_weighted_logistic(z_all[:, None], y_all, w_all)
        nov_fit = fit_weighted_logistic(novelty_terms(z_all, u_all, mu, sd), y_all, w_all)
        z_te, u_te = head(x[te]), nov(x[te])
        z_in, u_in = head(x[seen]), nov(x[seen])
        probs = {
            part: {
                "head": sigmoid(z),
                "oof": sigmoid(a * z + b),
                "oof+seen": sigmoid(mixed(z[:, None])),
                "novelty": sigmoid(nov_fit(novelty_terms(z, u, mu, sd))),
            }
            for part, z, u in (("held_out", z_te, u_te), ("in_dist", z_in, u_in))
        }
        res: dict = {
            "novelty_auc_new_vs_seen": round(
                roc_auc(np.r_[np.ones(te.sum()), np.zeros(seen.sum())], _rank01(np.r_[u_te, u_in])),
                4,
            )
        }
        for name in CALIBRATIONS:
            res[name] = {
                "held_out": scored(y[te], probs["held_out"][name]),
                "in_dist": scored(y[seen], probs["in_dist"][name]),
            }
        results[fold] = res
        print(f"  {fold} done ({time.time() - t0:.0f} s)", flush=True)

    def cell(m: dict) -> str:
        return f"{m['auc']:.3f}/{m['ece']:.3f}{'*' if m['ece_note'] else ' '}"

    print(f"\n{'calibration':<10} " + " ".join(f"{f:>27}" for f in FOLDS))
    print(f"{'':<10} " + " ".join(f"{'held-out':>13} {'in-dist':>13}" for _ in FOLDS))
    for name in CALIBRATIONS:
        print(
            f"{name:<10} "
            + " ".join(
                f"{cell(results[f][name]['held_out']):>13} {cell(results[f][name]['in_dist']):>13}"
                for f in FOLDS
            )
        )
    print(
        "novelty AUC, held-out kind vs kept-out faces of seen kinds: "
        + ", ".join(f"{f} {results[f]['novelty_auc_new_vs_seen']:.3f}" for f in FOLDS)
    )
    if args.photos:
        results["real_photos"] = photo_novelty(x, xp, groups, twin, args.k, v)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=1) + "\n")
    print(f"wrote {out}")


def photo_novelty(x, xp, groups, twin, k: int, v) -> dict:
    """Novelty of real photos from outside the training sources (the group photos of
    benchmarks/faces_groups.py) against every sample face and twin, and the share above the
    90/95/99th percentile of the sample faces' own novelty (each scored without the faces of
    its own video or image, and their twins)."""
    from faces_groups import fetch

    from facetrust.faces.align import FaceAligner
    from facetrust.faces.detector import FaceDetector
    from facetrust.media import load_image
    from facetrust.models.clip import shared_clip_vit_b16

    blocks = len(v.blocks)
    ref = np.concatenate([x, xp])
    ref_groups = np.concatenate([groups, groups[twin]])
    seen = novelty(ref, x, k, blocks, groups=(groups, ref_groups))
    detector, aligner = FaceDetector(landmarks=True), FaceAligner(size=256, margin=0.2)
    crops = []
    for path in sorted(fetch(Path.home() / ".cache" / "facetrust-bench").values()):
        image = load_image(str(path))
        crops += [aligner(image, face) for face in detector(image)]
    q = pl.view(pl.raw_features(shared_clip_vit_b16(), crops), v.pool, v.l2, v.blocks)
    photos = novelty(ref, q.astype(np.float32), k, blocks)
    cuts = {q_: float(np.quantile(seen, q_ / 100)) for q_ in (90, 95, 99)}
    res = {
        "faces": len(photos),
        "seen_quantiles": {str(q_): round(c, 4) for q_, c in cuts.items()},
        "photo_novelty": [round(float(u), 4) for u in photos],
        "share_above": {str(q_): round(float((photos > c).mean()), 3) for q_, c in cuts.items()},
    }
    print(
        f"real group photos: {len(photos)} faces; share above the 90/95/99th percentile of "
        f"seen faces' novelty: {', '.join(str(v) for v in res['share_above'].values())}"
    )
    return res


def _rank01(s: np.ndarray) -> np.ndarray:
    """Scores mapped to (0, 1] by rank (roc_auc takes probabilities; the AUC is the same)."""
    return (np.argsort(np.argsort(s)) + 1) / len(s)


if __name__ == "__main__":
    main()
