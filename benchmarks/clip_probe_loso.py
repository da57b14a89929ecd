"""The CLIP expert alone under leave-one-kind-out: which blocks and pooling transfer?

For each fold of ``benchmarks/loso.py`` (face swap, composite, GAN, diffusion) a linear probe
on the cached CLIP features (clean view) is fitted on up to ``--cap`` faces of the other
sources (0: all of them), by ``facetrust fuse``'s own head fitting (standardised L2 logistic
regression, C picked by source-grouped CV, or fixed with ``--c``), and scored by AUC on the
held-out sources (clean view), with its 95 % bootstrap interval (whole videos resampled); a
fold with more than one fake source (GAN: gan140k, stylegan2small) also gets each source's fakes
against the fold's reals.
``--views both`` trains on the clean and the degraded view of each face, as the shipped head;
``--balance`` weighs every (source, label) cell of the training faces alike. ``--pseudo
sbi,splice,trace`` adds one pseudo-fake twin of every real of the other sources as a fake (the
head ``facetrust fuse --pseudo`` fits; their features extracted once, as fuse does, into a
folder beside the cache: about 1.5 h on 2 cores for the ~7,000 reals of the shared data);
``--twins-only`` then trains on the reals and their twins alone, no real fake (SBI's recipe).
Mixes separated by ``/`` (``--pseudo sbi,splice,trace/resynth``) fit one head per mix, each with
its own twins (``none``: no twins), and score the fold by their equal-weight average (``facetrust
fuse --weights equal``'s rule, its Platt scaling fitted on the training faces' clean view); a mix
may name its own blocks (``sbi,splice,trace@7-12/resynth@1-6``) instead of the run's.
``--pairwise`` fits each head on within-source pairs only (every fake ranked above every real of
its own source, ``facetrust.train.pairwise``; C fixed by ``--c``), so what tells one source from
another earns the head nothing; sources with one class add no pair (twins give them one), unless
``--matched``: a fake-only source's fakes are then ranked against the reals of the sources whose
images share their format, JPEG quality and size (``facetrust.train.pairwise.format_partners``:
sdfd's 448 px and stylegan2small's 256 px JPEGs of quality 90 against gan140k's and
openforensics' 256 px reals of quality 90, those of them in the fold's training rows).
``--real-vs-real`` adds the real-vs-real control of the same recipe: heads fitted on every face,
cross-fitted over 5 groups of videos so each face is scored by heads that never saw its video, and
their AUC between the reals of every pair of sources (near 0.5 when the recipe does not score the
source; ``facetrust.train.shortcuts.real_vs_real``). ``--in-dist CONFIG`` adds the recipe fitted
on CONFIG's train split (``facetrust fuse``'s rows) and scored on its val split: AUC over every
val face and per fake source (its fakes against every val real). Wherever a recipe is fitted
(a fold, a group of the control, the train split) its twins are those of the reals it trains on.
``--train-on KIND`` fits on that kind's sources alone and scores every other kind (which kind
teaches which). ``--drop-pcs K`` projects the training reals' K leading principal directions out
of every face before each head (their content and source; after Effort, Yan et al. 2025).
``--kinds-seen N`` fits on every N of the other kinds in turn (their sources and the reals of the
sources in no fold, ``--cap`` faces drawn from each, so that only the number of kinds seen
changes) and scores the held-out kind by each; 1, 2, 3 give how transfer grows with the kinds
of fake seen.
``--per-kind`` fits one head per training kind instead (``--cap`` faces of its sources and the
reals of no fold) and scores the held-out kind by their equal-weight average, their maximum and
the head of the kind whose training faces are nearest each face (a gate).
``--inlp R`` projects out, before each head, what tells the training reals' sources apart
(R rounds of iterative nullspace projection, ``source_directions``).
``--drop-sources A,B`` keeps those sources out of every head's training faces (e.g. the reals of
no fold, imfdb and webfaces: do more kinds of *real* help?); each fold then also scores their
faces (the share of their reals called fake at 0.5, and the held-out fakes against them).
``--drop-identity K`` projects out, before each head, the K directions of the features that
predict who a face is (a ridge regression of MobileFaceNet's embedding on the training faces'
features, its K leading singular directions, ``--identity-rounds`` times on what is left;
embeddings cached in data/identity-all.npz, ~6 min for the shared data): a head that reads
identity learns the people of its sources.
``--match-sharpness`` weighs the training faces so that, within each source with both classes,
reals and fakes have the same mass in each fifth of the source's sharpness (variance of the
Laplacian; faces of a class absent from their fifth weigh nothing), so blur cannot tell the
classes apart within a source (sharpness cached in data/sharpness-all.npz, ~1 min).
``--clean-fakes Q`` drops, before each head, the training fakes that look real to the recipe
itself (confident learning, Northcutt et al. 2021; DFDC labels some audio-only fakes FAKE): the
recipe is cross-fitted on the training faces (4 groups of videos), and a fake whose out-of-fold
logit is below the Q-quantile of its own source's training reals (every training real for a
source with fewer than 50) is left out of the head's fit.
``--agree`` fits each head on the features whose weight has one sign in a head of each training
kind alone (an AND-mask over kinds, Parascandolo et al. 2021).
``--test-view degraded`` scores the held-out faces on their degraded view (every face shrunk
to 64-160 px and JPEG-compressed, as the second training view of ``--views both``) instead of
the clean one, whichever views the head trained on.
``--controls`` adds, beside each twin, its real-labelled control (the real given what the making
does besides forging, ``PseudoFakeMaker.control``: for resynth the real softened to its twin),
so a head cannot tell the two apart by that side effect; extracted once into ``...-controls``.
``--clip-size 160`` reads CLIP with the crop resized to 160 px (``facetrust fuse --clip-size``;
its features need a cache of their own, e.g. ``--features data/features-160``).
``--routed`` fits a clean-view head and a both-view head and mixes them per face by a router,
a logistic regression of the view on the same tokens (sharp faces to the clean-view head,
shrunk and re-compressed ones to the other): ``fit_routed_head``, what ``facetrust fuse
--views routed`` fits.
Reads the feature cache that ``facetrust fuse`` (or ``loso.py --fuse``) writes with the same
pooling: class tokens (``--pool cls``) or class + mean patch tokens with L2 per block (``--pool
cls+mean --l2``, the shipped default's); made on first use (~52 min for every face of the
shared data on 2 cores) and resumed if cut. ``--cache-pool cls+mean+center`` names a cache of
more pool parts, unnormalised, from which every ``--pool`` of its parts is read (with or without
``--l2``; ``center``: the inner face, :mod:`facetrust.models.clip_pool`); ``--extract-views
clean`` makes a new cache of the clean view alone (half the time).
Usage:

  python benchmarks/clip_probe_loso.py [LAYERS ...]     # e.g. 6,9,12 4,8,12 12
  python benchmarks/clip_probe_loso.py all --pool cls+mean --l2 --cap 0 --out JSON
  python benchmarks/clip_probe_loso.py all --pool cls+mean --l2 --cap 0 --views both --c 0.003
  python benchmarks/clip_probe_loso.py all --pool cls+mean --l2 --cap 0 --views both --c 0.003 \
      --pseudo sbi,splice,trace
  python benchmarks/clip_probe_loso.py all --pool cls+mean --l2 --cap 0 --views both --c 0.003 \
      --pseudo sbi,splice,trace/resynth
  python benchmarks/clip_probe_loso.py all --pool cls+mean --l2 --cap 0 --views both --c 0.003 \
      --pseudo sbi,splice,trace@7-12/resynth@1-6
  python benchmarks/clip_probe_loso.py all --pool cls+mean --l2 --cap 0 --views both --c 0.003 \
      --pseudo resynth --controls
  python benchmarks/clip_probe_loso.py all --pool cls+mean --l2 --cap 0 --views both --c 0.003 \
      --pairwise --real-vs-real --in-dist configs/long.yaml
  python benchmarks/clip_probe_loso.py all --pool cls+mean --l2 --cap 0 --views both --c 0.003 \
      --pairwise --matched --real-vs-real --in-dist configs/long.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from facetrust.config import apply_threads
from facetrust.data.manifest import read_manifest
from facetrust.detect.calibration import sigmoid
from facetrust.detect.experts import ClipExpert, expert_class
from facetrust.train.features import VIEWS, extract_features
from facetrust.train.fusion import (
    C_GRID,
    _fit_head,
    _head_rows,
    _Twins,
    fit_equal_weights,
    fit_linear_head,
    fit_routed_head,
    fusion_spec,
    parse_clip_layers,
    parse_pseudo,
    twin_features,
    widest_experts,
)
from facetrust.train.metrics import auc_text, roc_auc
from facetrust.train.pairwise import fit_pairwise_head, format_partners
from facetrust.train.shortcuts import real_vs_real

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import FOLDS, by_fake_source, fold_figures  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("layers", nargs="*", default=["6,9,12"], help="block sets, or 'all'")
    ap.add_argument("--pool", default="cls", help="cls, cls+mean, center, cls+center, ...")
    ap.add_argument(
        "--cache-pool",
        default="",
        help="the pool of the --features cache, unnormalised (e.g. cls+mean+center): every "
        "--pool of its parts, with or without --l2, is read from it (default: --pool, --l2)",
    )
    ap.add_argument(
        "--extract-views",
        default="both",
        choices=["clean", "both"],
        help="the views a new --features cache holds (clean: half the time, --views clean only)",
    )
    ap.add_argument("--l2", action="store_true", help="L2 per block (the cache's setting)")
    ap.add_argument("--clip-size", type=int, default=224, help="CLIP input side (facetrust fuse's)")
    ap.add_argument("--cap", type=int, default=6000, help="training faces per fold (0: all)")
    ap.add_argument("--c", type=float, default=0.0, help="fixed C (0: grouped CV picks it)")
    ap.add_argument("--views", default="clean", choices=["clean", "both"], help="training views")
    ap.add_argument("--balance", action="store_true", help="weigh (source, label) cells alike")
    ap.add_argument(
        "--routed",
        action="store_true",
        help="a clean-view and a both-view head, mixed per face by a view router (--views both)",
    )
    ap.add_argument("--pairwise", action="store_true", help="within-source pairs only (--c)")
    ap.add_argument(
        "--matched", action="store_true", help="fake-only sources paired with format-matched reals"
    )
    ap.add_argument("--real-vs-real", action="store_true", help="the real-vs-real control too")
    ap.add_argument(
        "--in-dist",
        default="",
        help="a training config: fit on its train split, score its val split",
    )
    ap.add_argument("--pseudo", default="", help="pseudo-fake twins of the reals, e.g. sbi,trace")
    ap.add_argument("--twins-only", action="store_true", help="no real fake in training")
    ap.add_argument("--controls", action="store_true", help="each twin's control, as a real")
    ap.add_argument(
        "--drop-pcs",
        type=int,
        default=0,
        help="project out the training reals' K principal directions before each head",
    )
    ap.add_argument(
        "--inlp",
        type=int,
        default=0,
        help="rounds of projecting out what tells the training reals' sources apart",
    )
    ap.add_argument(
        "--agree",
        action="store_true",
        help="keep the features whose weight has one sign in every training kind's head",
    )
    ap.add_argument(
        "--test-view",
        default="clean",
        choices=["clean", "degraded"],
        help="the view the held-out faces are scored on",
    )
    ap.add_argument(
        "--train-on",
        default="",
        choices=["", *FOLDS],
        help="train on this kind's sources only, score each other kind",
    )
    ap.add_argument(
        "--kinds-seen",
        type=int,
        default=0,
        choices=[0, 1, 2, 3],
        help="train on every N of the other kinds (and the reals of no fold), each in turn",
    )
    ap.add_argument(
        "--per-kind",
        action="store_true",
        help="one head per training kind (average, maximum, nearest kind), not one head",
    )
    ap.add_argument(
        "--drop-sources",
        default="",
        help="sources no head trains on (comma-separated), e.g. imfdb,webfaces",
    )
    ap.add_argument(
        "--drop-identity",
        type=int,
        default=0,
        help="project out K feature directions that predict the face's identity (MobileFaceNet)",
    )
    ap.add_argument(
        "--identity-rounds",
        type=int,
        default=1,
        help="--drop-identity's rounds, each on what the earlier ones left (INLP-style)",
    )
    ap.add_argument(
        "--match-sharpness",
        action="store_true",
        help="weigh reals and fakes alike in each sharpness fifth of their source",
    )
    ap.add_argument(
        "--clean-fakes",
        type=float,
        default=0.0,
        help="leave out training fakes scored out of fold below this quantile of their reals",
    )
    ap.add_argument("--manifest", default="data/shared.jsonl")
    ap.add_argument("--features", default="data/features-shared")
    ap.add_argument("--out", default="", help="write the figures as JSON")
    args = ap.parse_args()
    if (args.twins_only or args.controls) and not args.pseudo:
        ap.error("--twins-only and --controls need --pseudo")
    if args.pairwise and (args.balance or not args.c):
        ap.error("--pairwise weighs every source alike already and needs a fixed --c")
    if args.matched and not args.pairwise:
        ap.error("--matched pairs the fake-only sources of --pairwise")
    if sum(map(bool, (args.drop_pcs, args.agree, args.inlp, args.drop_identity))) > 1:
        ap.error(
            "--drop-pcs, --inlp, --drop-identity and --agree are different heads: one at a time"
        )
    other_heads = (args.drop_pcs, args.inlp, args.agree, args.drop_identity)
    if args.match_sharpness and (
        args.balance or args.pseudo or args.pairwise or args.routed or any(other_heads)
    ):
        ap.error("--match-sharpness weighs the faces of a plain head: no other weights or heads")
    if args.drop_identity and (args.pseudo or args.routed):
        ap.error("--drop-identity needs each training row's own face: no twins or router")
    if args.routed and (args.views != "both" or args.pseudo or args.pairwise or not args.c):
        ap.error("--routed fits its own views' heads: --views both, a fixed --c, no twins or pairs")
    if args.agree and args.pairwise:
        ap.error("--agree fits pointwise heads (a kind may have no within-source pair)")
    if (args.kinds_seen or args.per_kind) and (args.train_on or args.cap == 0):
        ap.error("--kinds-seen and --per-kind draw --cap faces a head, and fit no --train-on")
    if args.kinds_seen and args.per_kind:
        ap.error("--kinds-seen and --per-kind are two different runs: one at a time")
    if args.clean_fakes and (args.pseudo or args.pairwise or args.routed or not args.c):
        ap.error("--clean-fakes cleans a plain head: a fixed --c, no twins, pairs or router")
    if not 0 <= args.clean_fakes < 1:
        ap.error("--clean-fakes: a quantile in [0, 1)")
    if args.train_on and (args.real_vs_real or args.in_dist):
        ap.error("--real-vs-real and --in-dist fit on every kind, not --train-on's")
    apply_threads(2)
    sets = [parse_clip_layers(a) for a in args.layers]
    rows = [r for r in read_manifest(args.manifest) if r.crop]
    dropped = args.dropped = [d.strip() for d in args.drop_sources.split(",") if d.strip()]
    unknown = set(dropped) - {r.source for r in rows}
    if unknown:
        ap.error(f"--drop-sources: no such source: {', '.join(sorted(unknown))}")
    if dropped and (args.real_vs_real or args.in_dist):
        ap.error("--drop-sources applies to the folds' heads, not the control or the val split")
    # the cache `facetrust fuse` and loso.py --fuse write (CLIP with this pooling + frequency),
    # made here on first use (~52 min for every face on 2 cores), resumed if cut, else read
    if args.cache_pool:
        spec = fusion_spec("clip,frequency", clip_pool=args.cache_pool, clip_size=args.clip_size)
    else:
        spec = fusion_spec(
            "clip,frequency", clip_pool=args.pool, clip_l2=args.l2, clip_size=args.clip_size
        )
    table = extract_features(
        rows,
        Path(args.manifest),
        Path(args.features),
        widest_experts(spec),
        views=VIEWS if args.extract_views == "both" else VIEWS[:1],
    )
    idx = table.rows(rows)
    y = np.array([r.y for r in rows])
    src = np.array([r.source for r in rows])
    videos = np.array([r.group("video") for r in rows])
    row_of = {r.crop: i for i, r in enumerate(rows)}  # a face's row, by its crop
    ident = None
    if args.drop_identity:  # each face's MobileFaceNet embedding (L2), cached once
        from identity_leak import embed

        ident = embed(rows, Path(args.manifest), Path("data/identity-all.npz"))
    sharp = None
    if args.match_sharpness:  # each face's sharpness, cached once
        sharp = sharpness_of(rows, Path(args.manifest), Path("data/sharpness-all.npz"))
        for name in np.unique(src):  # the median of each class, where a source has both
            k = src == name
            if len(np.unique(y[k])) == 2:
                med = [float(np.median(sharp[k & (y == c)])) for c in (0, 1)]
                print(f"  {name}: median sharpness real {med[0]:.0f}, fake {med[1]:.0f}")
    partners = None
    if args.matched:
        partners = format_partners(
            src,
            y,
            [r.format for r in rows],
            [r.jpeg_quality for r in rows],
            [(r.width or 0) * (r.height or 0) for r in rows],
        )
        print(f"  fake-only sources ranked against the reals of: {partners}", flush=True)
    # one head per mix of twins ("/" between mixes), each on its own blocks when it names them
    mixes: list[tuple[RowTwins | None, RowTwins | None, tuple[int, ...] | None]] = [
        (None, None, None)
    ]
    if args.pseudo:  # extracted by the cache's own experts, as `facetrust fuse` extracts them
        experts = [expert_class(e["name"])(**e["options"]) for e in table.experts]
        mixes = [mix_of(m, rows, row_of, args, experts) for m in args.pseudo.split("/")]
    faces: dict = {}  # per block set: the faces' views, read once
    twin_views: dict = {}  # per (mix, block set, 0 twins / 1 controls): their views, read once

    def data(mix: int, blocks: tuple[int, ...]):
        expert = ClipExpert(layers=blocks, pool=args.pool, l2=args.l2, size=args.clip_size)
        if blocks not in faces:
            wanted = args.views == "both" or args.test_view == "degraded"
            xd = table.get(expert, "degraded", idx) if wanted else None
            faces[blocks] = (table.get(expert, "clean", idx), xd)
        for part in (0, 1):
            extra = mixes[mix][part]
            if extra is not None and (mix, blocks, part) not in twin_views:
                twin_views[mix, blocks, part] = extra.of(expert)
        return faces[blocks], [twin_views.get((mix, blocks, part)) for part in (0, 1)]

    def fit(xt, yt, gt):
        if args.pairwise:
            return fit_pairwise_head(xt, yt, gt, args.c, partners=partners)
        return _fit_head(xt, yt, gt, (args.c,) if args.c else C_GRID, args.balance)

    def score(layers, train, test):
        """The recipe fitted on the faces ``train`` (both views with ``--views both``) and the
        twins (and controls) of the reals among them, one head per mix; the held-out faces
        ``test`` scored by it (several mixes: their equal-weight average, Platt-scaled on the
        training faces' clean view). Returns the probabilities and each head's C."""
        if args.twins_only:
            train = train[y[train] == 0]
        if args.clean_fakes:
            x_clean = data(0, mixes[0][2] or layers)[0][0]
            train = confident_rows(x_clean, train, y, src, videos, fit, args.clean_fakes)
        z_train, z_test, cs = [], [], []
        for mix, (*_, blocks) in enumerate(mixes):
            (x, xd), extras = data(mix, blocks or layers)
            views = [x[train]] if args.views == "clean" else [x[train], xd[train]]
            # the twins of the training faces' reals as fakes, their controls as reals
            for i, t in enumerate(extras):
                if t is not None:
                    keep = np.isin(mixes[mix][i].reals, train)
                    extras[i] = ([v[keep] for v in t[0][: len(views)]], t[1][keep])
            xt, yt, gt = _head_rows(views, y[train], src[train], *extras)
            del views, extras  # copies of ~3 GB on every face: gone before the fit
            if args.drop_pcs:  # the reals' high-variance subspace out, before the head
                basis = principal_directions(xt, np.flatnonzero(yt == 0), args.drop_pcs)
                head, info = fit(project_out(xt, basis), yt, gt)
                head = partial(lambda h, b, v: h(project_out(v.copy(), b)), head, basis)
            elif args.drop_identity:  # what predicts who the face is out, before the head
                faces = np.tile(ident[train], (len(xt) // len(train), 1))  # one row per view
                basis = identity_directions(
                    xt, faces, args.drop_identity, rounds=args.identity_rounds
                )
                head, info = fit(project_out(xt, basis), yt, gt)
                head = partial(lambda h, b, v: h(project_out(v.copy(), b)), head, basis)
            elif args.inlp:  # what tells the reals' sources apart out, before the head
                basis = source_directions(xt, np.flatnonzero(yt == 0), gt, args.inlp)
                head, info = fit(project_out(xt, basis), yt, gt)
                head = partial(lambda h, b, v: h(project_out(v.copy(), b)), head, basis)
            elif args.agree:  # only what every training kind's head reads the same way
                keep = agreeing_features(xt, yt, gt, fit)
                head, info = fit(xt[:, keep], yt, gt)
                head = partial(lambda h, k, v: h(v[:, k]), head, keep)
                print(f"    {len(keep)} of {xt.shape[1]} features agree", flush=True)
            elif args.routed:  # a clean-view head and a both-view head, mixed by a view router
                view = np.repeat(np.arange(2, dtype=np.int64), len(train))
                head, info = fit_routed_head(xt, yt, gt, view, (args.c,), args.balance)
            elif args.match_sharpness:  # reals and fakes alike in each sharpness fifth
                w = np.tile(
                    sharpness_weights(sharp[train], y[train], src[train]), len(xt) // len(train)
                )
                head, info = fit_linear_head(
                    xt, yt, gt, (args.c,) if args.c else C_GRID, sample_weight=w
                )
            else:
                head, info = fit(xt, yt, gt)
            if len(mixes) > 1:  # the average's spread and Platt scaling read these
                z_train.append(head(x[train]))
            z_test.append(head((xd if args.test_view == "degraded" else x)[test]))
            cs.append(info["C"])
        if len(mixes) == 1:
            return sigmoid(z_test[0]), cs
        w, b = fit_equal_weights(np.stack(z_train, 1), y[train])
        return sigmoid(np.stack(z_test, 1) @ w + b), cs

    out: dict = {}
    for layers in sets:
        t0 = time.time()
        res = {}
        for fold, held in FOLDS.items():
            test = np.isin(src, held)
            if args.train_on == fold:
                continue
            if len(np.unique(y[test])) < 2:
                print(f"  {fold:10s} skipped: one class held out", flush=True)
                continue
            if args.kinds_seen:  # every N of the other kinds in turn, one training size
                res[fold] = kinds_seen(fold, partial(score, layers), test, y, src, videos, args)
                continue
            if args.per_kind:  # a head per training kind, combined
                x_clean = data(0, layers)[0][0]
                res[fold] = per_kind(
                    fold, partial(score, layers), test, y, src, videos, args, x_clean
                )
                continue
            train = np.flatnonzero(np.isin(src, FOLDS[args.train_on]) if args.train_on else ~test)
            train = train[~np.isin(src[train], dropped)]
            if args.cap and len(train) > args.cap:
                train = np.random.default_rng(0).choice(train, args.cap, replace=False)
            unseen = np.flatnonzero(np.isin(src, dropped) & ~test)  # faces no head trained on
            p, cs = score(layers, train, np.concatenate([np.flatnonzero(test), unseen]))
            p, p_unseen = p[: test.sum()], p[test.sum() :]
            res[fold] = {
                **fold_figures(y[test], p, videos[test]),  # ECE of the head's own probabilities
                "train": int((y[train] == 0).sum()) if args.twins_only else len(train),
                "C": cs[0] if len(cs) == 1 else cs,
            }
            if len(unseen):  # the dropped sources' faces, never trained on, as more test faces
                res[fold]["dropped"] = dropped_figures(y[test], p, y[unseen], p_unseen)
                print(f"    dropped sources' faces: {res[fold]['dropped']}", flush=True)
            print(f"  {fold:10s} {auc_text(res[fold])}  ECE {res[fold]['ece']:.3f}", flush=True)
            split = by_fake_source(y[test], src[test], p)
            if split:
                res[fold]["by_source"] = split
        aucs = [f["auc"] for f in res.values()]
        name = ",".join(map(str, layers))
        out[name] = {
            "folds": res,
            "mean_auc": round(float(np.mean(aucs)), 4),
            "worst_auc": round(float(np.min(aucs)), 4),
        }
        recipe = partial(score, layers)
        if args.real_vs_real:
            out[name]["real_vs_real"] = cross_fitted_control(recipe, y, src, videos)
        if args.in_dist:
            out[name]["in_dist"] = in_distribution(recipe, y, src, row_of, args.in_dist)
        print(
            f"layers {name} ({args.pool}{', L2' * args.l2}): mean {np.mean(aucs):.3f} "
            f"worst {np.min(aucs):.3f} ({time.time() - t0:.0f} s)",
            flush=True,
        )
    if args.out:
        meta = {
            "pool": args.pool,
            "l2": args.l2,
            "clip_size": args.clip_size,
            "cap": args.cap,
            "features": args.features,
            "views": args.views,
            "C": args.c or "grouped CV",
            "balance": args.balance,
            "pairwise": args.pairwise,
            "matched": partners,
            "pseudo": args.pseudo,
            "twins_only": args.twins_only,
            "controls": args.controls,
            "drop_pcs": args.drop_pcs,
            "drop_identity": args.drop_identity,
            "identity_rounds": args.identity_rounds,
            "inlp": args.inlp,
            "train_on": args.train_on,
            "agree": args.agree,
            "test_view": args.test_view,
            "kinds_seen": args.kinds_seen,
            "per_kind": args.per_kind,
            "drop_sources": dropped,
            "routed": args.routed,
            "clean_fakes": args.clean_fakes,
            "match_sharpness": args.match_sharpness,
        }
        Path(args.out).write_text(json.dumps({**meta, "results": out}, indent=1) + "\n")


def sharpness_of(rows, manifest: Path, cache: Path) -> np.ndarray:
    """Each row's crop sharpness (``identity_leak.sharpness``), cached by crop keys."""
    from identity_leak import cached_by_crops, sharpness

    from facetrust.data.manifest import read_crop

    def compute():
        return np.array([sharpness(read_crop(manifest, r.crop)) for r in rows])

    return cached_by_crops(rows, cache, "sharpness", compute)


def sharpness_weights(sharp, y, src, bins: int = 5) -> np.ndarray:
    """Weights that give reals and fakes the same mass in each of ``bins`` sharpness quantile
    bins of their source (a bin's total mass kept; faces of a class alone in their bin weigh 0);
    sources with one class keep weight 1."""
    w = np.ones(len(y))
    for s in np.unique(src):
        k = src == s
        if len(np.unique(y[k])) < 2:
            continue
        b = np.digitize(sharp, np.quantile(sharp[k], np.linspace(0, 1, bins + 1)[1:-1]))
        for i in range(bins):
            cell = k & (b == i)
            n = [int(np.sum(cell & (y == c))) for c in (0, 1)]
            for c in (0, 1):
                w[cell & (y == c)] = sum(n) / (2 * n[c]) if min(n) else 0.0
    return w


def confident_rows(x, train, y, src, videos, fit, q: float, k: int = 4) -> np.ndarray:
    """``train`` without the fakes that look real out of fold: each training face scored by a
    head ``fit(x, y, groups)`` fitted on the other ``k`` groups of videos; a fake goes when its
    logit is below the ``q``-quantile of its own source's reals (of every real, for a source
    with fewer than 50). Prints how many go, per source."""
    from sklearn.model_selection import GroupKFold

    z = np.zeros(len(train))
    for a, b in GroupKFold(k).split(train, y[train], videos[train]):
        head, _ = fit(x[train[a]], y[train[a]], src[train[a]])
        z[b] = head(x[train[b]])
    ys, ss = y[train], src[train]
    bad = np.zeros(len(train), bool)
    for s in np.unique(ss[ys == 1]):
        own = (ss == s) & (ys == 0)
        ref = z[own] if own.sum() >= 50 else z[ys == 0]
        bad |= (ss == s) & (ys == 1) & (z < np.quantile(ref, q))
    names, counts = np.unique(ss[bad], return_counts=True)
    gone = {str(s): int(n) for s, n in zip(names, counts, strict=True)}
    fakes = int((ys == 1).sum())
    print(f"    --clean-fakes {q}: {int(bad.sum())} of {fakes} fakes left out {gone}", flush=True)
    return train[~bad]


def dropped_figures(y_test, p_test, y_unseen, p_unseen) -> dict:
    """What a fold's head makes of the faces of the sources it was kept from (``--drop-sources``;
    reals, for the sources in no fold): the share called fake at 0.5, against the held-out
    reals' share, and the AUC of the held-out fakes against them."""
    reals = p_unseen[y_unseen == 0]
    out = {
        "reals": len(reals),
        "called_fake": round(float((reals > 0.5).mean()), 4) if len(reals) else None,
        "held_out_reals_called_fake": round(float((p_test[y_test == 0] > 0.5).mean()), 4),
    }
    if len(reals):
        fakes = p_test[y_test == 1]
        yy = np.r_[np.zeros(len(reals)), np.ones(len(fakes))]
        out["auc_held_out_fakes_vs_them"] = round(roc_auc(yy, np.r_[reals, fakes]), 4)
    return out


def kinds_pool(kinds, src, dropped) -> np.ndarray:
    """The faces a head on ``kinds`` may train on: their sources' and those of the sources in
    no fold (reals), less the ``dropped`` sources."""
    in_fold = np.isin(src, [s for sources in FOLDS.values() for s in sources])
    pool = np.flatnonzero(~in_fold | np.isin(src, [s for k in kinds for s in FOLDS[k]]))
    return pool[~np.isin(src[pool], dropped)]


def kinds_seen(fold: str, score, test, y, src, videos, args) -> dict:
    """The held-out kind ``fold`` scored by the recipe fitted on each ``args.kinds_seen`` of the
    other kinds (their sources, with the reals of the sources in no fold), ``args.cap`` faces
    drawn from each training set so that only the number of kinds seen changes. The fold's AUC
    is the mean over those training sets."""
    from itertools import combinations

    others = [k for k in FOLDS if k != fold]
    held = np.flatnonzero(test)
    subsets = {}
    for kinds in combinations(others, args.kinds_seen):
        pool = kinds_pool(kinds, src, args.dropped)
        train = np.random.default_rng(0).choice(pool, min(args.cap, len(pool)), replace=False)
        p, _ = score(train, held)
        figures = {**fold_figures(y[test], p, videos[test]), "train": len(train)}
        subsets["+".join(kinds)] = figures
        print(f"  {fold:10s} from {'+'.join(kinds):30s} {auc_text(figures)}", flush=True)
    aucs = [f["auc"] for f in subsets.values()]
    return {"auc": round(float(np.mean(aucs)), 4), "subsets": subsets}


def per_kind(fold: str, score, test, y, src, videos, args, x) -> dict:
    """The held-out kind ``fold`` scored by one head per other kind (fitted on ``args.cap``
    faces of that kind's sources and the reals of the sources in no fold), combined three ways:
    the equal-weight average of their logits (``facetrust fuse --weights equal``'s rule, its
    Platt scaling fitted on every head's training faces); their maximum after each is
    standardised on those faces (a face is as fake as the head most sure of it says); and the
    head of the kind whose faces are nearest (a gate: the cosine similarity of the face's
    clean view ``x`` to the mean of each kind's own training faces, reals and fakes), also
    standardised."""
    held = np.flatnonzero(test)
    rng = np.random.default_rng(0)
    trains = {}
    for kind in (k for k in FOLDS if k != fold):
        pool = kinds_pool((kind,), src, args.dropped)
        trains[kind] = rng.choice(pool, min(args.cap, len(pool)), replace=False)
    seen = np.unique(np.concatenate(list(trains.values())))
    rows = np.concatenate([seen, held])
    z = []
    for train in trains.values():
        p = np.clip(score(train, rows)[0], 1e-7, 1 - 1e-7)
        z.append(np.log(p / (1 - p)))
    z = np.stack(z, 1)
    zs, zh = z[: len(seen)], z[len(seen) :]
    w, b = fit_equal_weights(zs, y[seen])
    mu, sd = zs.mean(0), zs.std(0)
    centres = []
    for kind, train in trains.items():
        own = train[np.isin(src[train], FOLDS[kind])]
        c = x[own].astype(np.float64).mean(0)
        centres.append(c / np.linalg.norm(c))
    xh = x[held].astype(np.float64)
    near = np.argmax(xh @ np.stack(centres, 1), axis=1)  # the nearest kind, per held-out face
    zstd = (zh - mu) / sd
    rules = {  # "max" and "nearest" for AUC only: not calibrated
        "mean": sigmoid(zh @ w + b),
        "max": sigmoid(zstd.max(1)),
        "nearest": sigmoid(zstd[np.arange(len(held)), near]),
    }
    kinds = list(trains)
    out: dict = {"heads": {}, "nearest_kind": {}}
    for lab, name in ((0, "reals"), (1, "fakes")):
        m = y[held] == lab
        out["nearest_kind"][name] = {k: int((near[m] == i).sum()) for i, k in enumerate(kinds)}
    print(f"  {fold:10s} nearest kind: {out['nearest_kind']}", flush=True)
    for i, kind in enumerate(trains):
        out["heads"][kind] = round(roc_auc(y[held], sigmoid(zh[:, i])), 4)
    for name, p in rules.items():
        out[name] = fold_figures(y[test], p, videos[test])
        if name != "mean":  # not calibrated: their ECE says nothing
            del out[name]["ece"]
        print(f"  {fold:10s} {name:5s} {auc_text(out[name])}  heads {out['heads']}", flush=True)
    out["auc"] = out["mean"]["auc"]
    return out


def cross_fitted_control(score, y, src, videos, k: int = 5) -> dict:
    """The real-vs-real control of a recipe ``score(train, test) -> (probabilities, C)``:
    every face scored by the recipe fitted on the other groups of videos (``k`` of them), then
    the AUC between the reals of each pair of sources."""
    from sklearn.model_selection import GroupKFold

    p = np.zeros(len(y))
    for tr, te in GroupKFold(k).split(y, y, videos):
        p[te] = score(tr, te)[0]
    finding = real_vs_real(p, src, y)
    pairs = finding.figures["pairs"]
    print(
        f"  real-vs-real: {len(finding.flags)} of {len(pairs)} pairs outside 0.40-0.60", flush=True
    )
    for pair, auc in pairs.items():
        print(f"    {pair}: {auc}", flush=True)
    return finding.figures


def in_distribution(score, y, src, row_of: dict, config: str) -> dict:
    """A recipe ``score(train, test) -> (probabilities, C)`` fitted on the train split of
    ``config`` (the rows ``facetrust fuse`` fits its heads on) and scored on its val split (the
    view ``--test-view`` names): AUC over every val face, and each fake source's fakes against
    every val real."""
    from facetrust.train.build import select_rows
    from facetrust.train.config import load_config
    from facetrust.train.metrics import roc_auc

    splits = select_rows(load_config(config))
    tr, va = (np.array([row_of[r.crop] for r in splits[s]]) for s in ("train", "val"))
    p = score(tr, va)[0]
    auc = round(roc_auc(y[va], p), 4)
    print(f"  in-distribution (val of {config}): AUC {auc:.3f} on {len(va)} faces", flush=True)
    return {"auc": auc, "n": len(va), "by_fake_source": by_fake_source(y[va], src[va], p)}


def principal_directions(x: np.ndarray, rows: np.ndarray, k: int, most: int = 8000):
    """The ``k`` leading principal directions ``(k, d)`` of ``x[rows]`` (up to ``most`` of
    them drawn), by randomized SVD of the centred rows."""
    from sklearn.utils.extmath import randomized_svd

    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(rows, min(most, len(rows)), replace=False))
    sample = x[pick].astype(np.float64)
    sample -= sample.mean(0)
    return randomized_svd(sample, k, random_state=0)[2].astype(np.float32)


def identity_directions(x, emb, k: int, most: int = 5000, ridge: float = 0.1, rounds: int = 1):
    """Directions ``(n, d)`` of ``x`` that predict the identity embedding ``emb`` (one row
    each): a ridge regression of the centred embedding on the centred features of up to
    ``most`` rows (solved in its dual, ``ridge`` times the mean squared norm as penalty), its
    coefficients' ``k`` leading left singular vectors; ``rounds`` times, each on what the
    earlier rounds left (as INLP iterates). Prints the share of the embedding's variance each
    round predicts on 1,000 other rows."""
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    pick, check = np.sort(order[:most]), np.sort(order[most : most + 1000])
    r = x[pick].astype(np.float64)
    mean, e_mean = r.mean(0), emb[pick].mean(0)
    r -= mean
    held = x[check].astype(np.float64) - mean
    basis = np.zeros((0, r.shape[1]))
    for _ in range(rounds):
        kern = r @ r.T
        lam = ridge * np.trace(kern) / len(r)
        a = np.linalg.solve(kern + lam * np.eye(len(r)), emb[pick] - e_mean)
        w = r.T @ a  # (d, embedding width)
        if len(check):
            resid = ((emb[check] - e_mean - held @ w) ** 2).sum()
            resid /= ((emb[check] - e_mean) ** 2).sum()
            print(f"    identity predicted from the features: R2 {1 - resid:.3f}", flush=True)
        u = np.linalg.svd(w, full_matrices=False)[0][:, :k]
        u -= basis.T @ (basis @ u)
        u = np.linalg.qr(u)[0]
        basis = np.vstack([basis, u.T])
        r -= (r @ u) @ u.T
        held -= (held @ u) @ u.T
    return np.ascontiguousarray(basis).astype(np.float32)


def source_directions(x, rows, groups, rounds: int, most: int = 4000, ridge: float = 0.1):
    """Iterative nullspace projection (INLP, Ravfogel et al. ACL 2020) of the source among
    ``x[rows]`` (up to ``most`` drawn): each round a ridge regression of the centred one-hot
    source on the features left (solved in its dual, ``ridge`` times the mean squared norm as
    penalty) gives the directions that tell the sources apart best, which are then removed;
    ``rounds`` rounds. Returns the orthonormal directions ``(k, d)``."""
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(rows, min(most, len(rows)), replace=False))
    r = x[pick].astype(np.float64)
    r -= r.mean(0)
    g = groups[pick]
    t = (g[:, None] == np.unique(g)[None]).astype(np.float64)
    t -= t.mean(0)
    k = r @ r.T
    lam = ridge * np.trace(k) / len(r)
    basis = np.zeros((0, r.shape[1]))
    for _ in range(rounds):
        rb = r @ basis.T
        a = np.linalg.solve(k - rb @ rb.T + lam * np.eye(len(r)), t)
        w = r.T @ a
        w -= basis.T @ (basis @ w)  # the directions, in what is left of the features
        u, sv, _ = np.linalg.svd(w, full_matrices=False)
        u = u[:, sv > 1e-6 * sv.max()]
        u -= basis.T @ (basis @ u)
        basis = np.vstack([basis, np.linalg.qr(u)[0].T])
    print(f"    {len(basis)} source directions out", flush=True)
    return basis.astype(np.float32)


def project_out(x: np.ndarray, basis: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """``x`` less its components on the orthonormal rows of ``basis``, in place, in chunks."""
    for i in range(0, len(x), chunk):
        b = x[i : i + chunk]
        b -= (b @ basis.T) @ basis
    return x


def agreeing_features(x: np.ndarray, y: np.ndarray, groups: np.ndarray, fit) -> np.ndarray:
    """The columns of ``x`` whose weight has one sign in the head ``fit`` makes for each kind of
    fake among the rows (its sources, ``groups``, by ``FOLDS``; kinds with both classes; the
    sources of no fold, reals only, in none of those heads): the AND-mask of Parascandolo et
    al. (ICLR 2021) on a linear head, kinds as its environments."""
    kind_of = {s: k for k, sources in FOLDS.items() for s in sources}
    kinds = np.array([kind_of.get(g, "") for g in groups])  # "": reals of no fold
    signs = []
    for kind in set(kinds) - {""}:
        rows = np.flatnonzero(kinds == kind)
        if len(np.unique(y[rows])) == 2:
            signs.append(np.sign(fit(x[rows], y[rows], groups[rows])[0].weight))
    s = np.stack(signs)
    return np.flatnonzero(np.all(s == s[0], axis=0) & (s[0] != 0))


@dataclass
class RowTwins:
    """Pseudo-fake twins (or their controls) and, for each, the row of its real among the
    run's faces, so a recipe takes the twins of the reals it trains on and no other."""

    twins: _Twins
    reals: np.ndarray

    def of(self, expert) -> tuple[list[np.ndarray], np.ndarray]:
        return self.twins.of(expert)


def mix_of(text: str, rows, row_of: dict, args, experts):
    """``"sbi,trace@7-12"`` -> the twins of that mix (None for ``none``), their controls (None
    without ``--controls``) and its blocks (None: the run's); their features extracted (or
    resumed) as ``facetrust fuse`` extracts twins."""
    kinds_text, _, blocks_text = text.partition("@")
    blocks = parse_clip_layers(blocks_text) if blocks_text else None
    if kinds_text.strip().lower() == "none":
        return None, None, blocks
    where, manifest, kinds = Path(args.features), Path(args.manifest), parse_pseudo(kinds_text)
    out = []
    for controls in (False, True)[: 1 + args.controls]:
        reals, table = twin_features(rows, manifest, where, kinds, experts, controls=controls)
        twins = _Twins(table, np.array([r.source for r in reals]), table.rows(reals))
        out.append(RowTwins(twins, np.array([row_of[r.crop] for r in reals])))
    return out[0], out[1] if args.controls else None, blocks


if __name__ == "__main__":
    main()
