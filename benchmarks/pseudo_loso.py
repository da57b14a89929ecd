"""Do pseudo-fakes made from reals help a frozen-CLIP head on kinds of fake it never saw?

  python benchmarks/pseudo_loso.py [--manifest data/shared.jsonl] [--per-class 250]
                                   [--kinds sbi,...] [--views cls cls-l2-norm ...]

The same stratified sample as benchmarks/shortcuts.py. For each real face with landmarks one
pseudo-fake is made (``--kinds``: the registered pseudo-fake kinds, drawn evenly; seeded).
CLIP ViT-B/16 tokens of all 12 blocks of every crop, then leave-one-kind-out with a linear head
(facetrust fuse's grouped-CV logistic regression) in three set-ups, each tested on the held-out
kind's real and fake faces:

  A  real fakes of the other kinds            (today's recipe)
  B  A + pseudo-fakes made from the training reals
  C  reals + pseudo-fakes only (no real fake at all, SBI-style)
  D  pseudo-fake twins only, as pairs: the head learns the direction from each real to its
     own pseudo-fake (features of the twin minus those of its real, and the reverse as reals),
     so what a real's source and content put in its features cancels out

``--control`` adds each set-up's real-vs-real control (benchmarks/shortcuts.py's part (b)) for
a head fitted on every kind, out of fold.

Each of ``--views`` is ``POOL[-l2][-norm]``: POOL ``cls`` (class tokens) or ``clsmean`` (class +
mean patch token of each block), ``-l2`` normalises each block's vector (the CLIP expert's
``pool``/``l2`` options), ``-norm`` trains the heads on re-encoded copies of every crop (the
training recipe's ``data.normalise``: the same random downscale + JPEG + upscale for reals,
fakes and pseudo-fakes alike, applied after the pseudo-fake is made) while testing on the
original crops, as a detector trained with that option meets its inputs. ``-ens`` fits one head
per block instead of one on all blocks and averages their logits, each divided by its spread,
with equal weights, then one Platt scaling (RINE's observation that blocks carry different
cues, combined as ``facetrust fuse --weights equal`` combines experts; ``-ensK``: K heads on K
equal spans of blocks, e.g. ``-ens2`` blocks 1-6 and 7-12); ``@A-B`` keeps blocks A
to B only (e.g. ``clsmean-l2@1-6``). ``-inlpN`` removes what tells the training reals'
sources apart before the head is fitted: N rounds of iterative null-space projection (INLP,
Ravfogel et al., ACL 2020: fit a linear source classifier on the reals, project its directions
out of every feature, repeat), so the head cannot score the source. ``-bal`` weighs the rows
so that every (source, label) cell of the training rows counts the same (pseudo-fakes are a
cell of their real's source), the head-level form of source-balanced batches. ``-rmean``
projects out the span of the training reals' per-source means (rank: sources - 1) before the
head, so the head gives the reals of every training source the same mean logit (after INLP
when both are asked). ``-kind`` fits one head per kind of training fake (each kind of real
fake, and the pseudo-fakes as one more) against every training real and averages them (each
divided by its spread); ``-kindmax`` takes the largest instead ("fake if any known kind of fake
says so"); both then Platt-scale.

Prints AUC [its 95 % bootstrap interval, whole videos of the held-out faces resampled] / ECE
per fold, mean and worst for every view and set-up side by side, and writes
docs/pseudo-loso-<kinds>-views.json. The raw tokens (class + mean patch token, no L2; of the
crops, their re-encoded copies and the pseudo-fakes with and without the re-encode) are
cached once in data/ (the crops' in pseudo-loso-raw-crops.npz, the pseudo-fakes' per mix in
pseudo-loso-raw-<kinds>.npz), so views cost only the heads.

``--also KIND`` adds a kind to a mix already cached without making the whole mix again: its
fakes are made alone (their own cache) and a seeded draw per real picks which twin it keeps,
every kind with an equal share (``--kinds sbi,splice,trace --also resynth``: a four-kind
mix). ``--setting KIND.FIELD=VALUE`` sets a maker's option (``resynth.face_blend=0.5``,
``resynth.weights="runs/other.safetensors"``; the value is JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetrust.config import apply_threads
from facetrust.data.manifest import read_crop, read_manifest, resolve
from facetrust.detect.experts.clip import ALL_BLOCKS, clip_cls_features, clip_pixels
from facetrust.train.fusion import C_GRID as DEFAULT_GRID
from facetrust.train.fusion import cell_weights, fit_equal_weights, fit_linear_head, fit_stack
from facetrust.train.metrics import auc_interval, ece_score, roc_auc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import FOLDS  # noqa: E402
from shortcuts import sample  # noqa: E402

C_GRID = DEFAULT_GRID  # the heads' regularisation strengths (--c: one)


def _ci(ci: list[float] | None) -> str:
    return "" if ci is None else f"[{ci[0]:.2f}-{ci[1]:.2f}]"


def make_fakes(kinds: list[str], settings: dict | None = None):
    """A function (crop, landmarks, donor crop, donor landmarks, rng) -> fake crop, and what
    makes the fakes (the mix's ``repr``: its makers' settings and, for ``resynth``, its
    weights' digest; a cache of fakes made otherwise is not reused)."""
    from facetrust.data.pseudo import PseudoFakeMix

    mix = PseudoFakeMix({k: 1.0 for k in kinds}, settings=settings)
    about = repr(mix)

    def make(img, lm, donor, dlm, rng):
        return mix(img, lm, rng, donor=donor, donor_landmarks=dlm).image

    return make, about


def view(raw: np.ndarray, pool: str, l2: bool, blocks=ALL_BLOCKS) -> np.ndarray:
    """``(N, 12, 1536)`` raw class + mean tokens -> the CLIP expert's features for ``pool``/``l2``
    of ``blocks`` (the same layout and normalisation as :func:`clip_cls_features`)."""
    raw = raw[:, [b - 1 for b in blocks]].astype(np.float32)
    tok = raw if pool == "cls+mean" else raw[..., :768]
    if l2:
        tok = tok / np.maximum(np.linalg.norm(tok, axis=-1, keepdims=True), 1e-12)
    return tok.reshape(len(tok), -1)


def sample_tokens(keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The raw tokens of the sample's crops and of their re-encoded copies, as this script
    caches them (data/pseudo-loso-raw-crops.npz), for scripts that read the same sample; a
    missing cache or one of another sample ends the run with what to do."""
    cache = Path("data/pseudo-loso-raw-crops.npz")
    if not cache.is_file():
        sys.exit(f"no {cache}: run benchmarks/pseudo_loso.py once to cache the sample's tokens")
    with np.load(cache) as z:
        if list(z["keys"]) != keys:
            sys.exit(f"{cache} holds another sample: run benchmarks/pseudo_loso.py again")
        return z["x"], z["xt"]


def raw_features(tower, crops: list[np.ndarray]) -> np.ndarray:
    feats = clip_cls_features(tower, clip_pixels(crops), ALL_BLOCKS, pool="cls+mean")
    return feats.reshape(len(crops), len(ALL_BLOCKS), -1).astype(np.float16)


@dataclass(frozen=True)
class View:
    """A parsed ``--views`` entry."""

    pool: str
    l2: bool = False
    norm: bool = False
    ens: int = 0  # heads on that many equal spans of blocks, averaged (0: one head)
    inlp: int = 0
    bal: bool = False  # every (source, label) cell weighs the same in the head's fit
    rmean: bool = False  # the training reals' per-source means projected out
    blocks: tuple[int, ...] = ALL_BLOCKS
    per_kind: str = ""  # "mean" / "max": a head per kind of training fake, see fit_setup


def parse_view(spec: str) -> View:
    """``"clsmean-l2-norm-ens2-inlp5@1-6"`` -> ``View("cls+mean", True, True, 2, 5, (1..6))``."""
    name, _, span = spec.partition("@")
    pool, *flags = name.split("-")
    inlp = [f for f in flags if f.startswith("inlp")]
    ens = [f for f in flags if f.startswith("ens")]
    try:
        lo, hi = (int(v) for v in span.split("-")) if span else (1, 12)
        rounds = int(inlp[0][4:]) if inlp else 0
        spans = (int(ens[0][3:]) if ens[0][3:] else hi - lo + 1) if ens else 0
    except ValueError:
        lo = hi = rounds = spans = 0
    if (
        pool not in ("cls", "clsmean")
        or not set(flags) - set(inlp) - set(ens)
        <= {"l2", "norm", "bal", "rmean", "kind", "kindmax"}
        or (
            {"kind", "kindmax"} & set(flags)
            and (ens or "bal" in flags or "kind" in flags and "kindmax" in flags)
        )
        or not 1 <= lo <= hi <= 12
        or len(inlp) > 1
        or len(ens) > 1
        or (inlp and rounds < 1)
        or (ens and (spans < 2 or (hi - lo + 1) % spans))
    ):
        raise SystemExit(
            f"--views: {spec!r} is not POOL[-l2][-norm][-ens[K]][-inlpN][-bal][-rmean]"
            "[-kind|-kindmax][@A-B] with POOL cls or clsmean, N >= 1, blocks 1 <= A <= B <= 12, "
            "K >= 2 dividing B - A + 1, and -kind or -kindmax without -ens or -bal"
        )
    return View(
        "cls" if pool == "cls" else "cls+mean",
        "l2" in flags,
        "norm" in flags,
        spans,
        rounds,
        "bal" in flags,
        "rmean" in flags,
        tuple(range(lo, hi + 1)),
        "mean" if "kind" in flags else "max" if "kindmax" in flags else "",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--manifest", default="data/shared.jsonl")
    ap.add_argument("--per-class", type=int, default=250)
    ap.add_argument("--kinds", default="sbi")
    ap.add_argument(
        "--also",
        default="",
        help="more kinds, each made alone (its own cache) and given an equal share of the "
        "twins: a seeded draw per real among the --kinds mix (weighted by its kind count) and "
        "these, so sbi,splice,trace --also resynth is a four-kind even mix",
    )
    ap.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="KIND.FIELD=VALUE",
        help="a pseudo-fake maker's setting (repeatable), e.g. resynth.face_blend=0.5",
    )
    ap.add_argument("--views", nargs="+", default=["cls"])
    ap.add_argument("--setups", default="ABC")
    ap.add_argument(
        "--folds", nargs="*", default=list(FOLDS), help="leave-one-kind-out folds (none: skip)"
    )
    ap.add_argument(
        "--control",
        action="store_true",
        help="also the real-vs-real control of each set-up's head fitted on every kind "
        "(out-of-fold by video or image, 5 folds): AUC between the reals of two sources",
    )
    ap.add_argument("--out", help="JSON to write (default docs/pseudo-loso-<kinds>-views.json)")
    ap.add_argument(
        "--c",
        type=float,
        help="one regularisation strength for every head instead of facetrust fuse's grouped-CV "
        "pick from its grid (21 fits per head; one with --c), for quick comparisons",
    )
    ap.add_argument(
        "--oof-platt",
        action="store_true",
        help="also a Platt scaling of each fold's head fitted on inner leave-one-kind-out "
        "logits of the training kinds (each scored by a head that did not see it), so the "
        "confidence is what transfers; its ECE is reported beside the raw head's",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    global C_GRID
    C_GRID = (args.c,) if args.c else DEFAULT_GRID
    apply_threads(args.threads)
    kinds = [k for k in args.kinds.split(",") if k]
    views = {v: parse_view(v) for v in args.views}
    manifest = Path(args.manifest)
    rows = sample(read_manifest(manifest), args.per_class, args.seed)
    reals = [i for i, r in enumerate(rows) if r.label == "real" and r.landmarks]
    settings: dict[str, dict] = {}
    for item in args.setting:
        key, _, value = item.partition("=")
        kind, _, field = key.partition(".")
        if not (kind and field and value):
            ap.error(f"--setting {item!r}: use KIND.FIELD=VALUE")
        settings.setdefault(kind, {})[field] = json.loads(value)
    also = [k for k in args.also.split(",") if k]
    raw = mixed_features(manifest, rows, reals, kinds, also, args.seed, settings)
    kinds = kinds + also
    y = np.array([r.y for r in rows])
    src = np.array([r.source for r in rows])
    src_p = src[reals]
    groups = np.array([r.group("video") for r in rows])

    results: dict = {}
    for name, v in views.items():
        x, data = view_data(raw, rows, reals, v)
        results[name] = {}
        for setup in args.setups:
            res = {}
            for fold in args.folds:
                test = np.isin(src, FOLDS[fold])
                if len(np.unique(y[test])) < 2:
                    continue
                keep = ~np.isin(src_p, FOLDS[fold])
                head = fit_setup(setup, data, ~test, keep, v)
                logit = head(x[test])
                p = 1 / (1 + np.exp(-logit))
                ci = auc_interval(y[test], p, clusters=groups[test])  # whole videos resampled
                res[fold] = {
                    "auc": round(roc_auc(y[test], p), 4),
                    "auc_ci": None if ci is None else [round(c, 4) for c in ci],
                    "ece": round(ece_score(y[test], p), 4),
                }
                if args.oof_platt:
                    inner = {f: s for f, s in FOLDS.items() if f != fold}
                    a, b = oof_platt(setup, data, x, ~test, keep, v, inner)
                    p_cal = 1 / (1 + np.exp(-(a * logit + b)))
                    res[fold]["ece_oof_platt"] = round(ece_score(y[test], p_cal), 4)
                    res[fold]["platt"] = [round(a, 4), round(b, 4)]
            aucs = [v["auc"] for v in res.values()] or [float("nan")]
            results[name][setup] = {
                "folds": res,
                "mean_auc": round(float(np.mean(aucs)), 4),
                "worst_auc": round(float(np.min(aucs)), 4),
            }
            cells = "  ".join(
                f"{k} {f['auc']:.3f}{_ci(f['auc_ci'])}/{f['ece']:.3f}"
                + (f"/{f['ece_oof_platt']:.3f}" if "ece_oof_platt" in f else "")
                for k, f in res.items()
            )
            r = results[name][setup]
            if res:  # no folds asked: the control alone
                print(
                    f"{name:<16} {setup}  {cells}  mean {r['mean_auc']:.3f} "
                    f"worst {r['worst_auc']:.3f}",
                    flush=True,
                )
            if args.control:
                rvr = control(data, x, groups, setup, v)
                results[name][setup]["real_vs_real"] = rvr
                print(
                    f"{name:<16} {setup}  real-vs-real: {rvr['outside']} of {len(rvr['pairs'])} "
                    f"pairs outside 0.40-0.60, worst {rvr['worst']}",
                    flush=True,
                )
    out = Path(args.out or f"docs/pseudo-loso-{'+'.join(kinds)}-views.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "layers": list(ALL_BLOCKS),
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


def mixed_features(manifest: Path, rows, reals, kinds, also, seed: int, settings=None) -> dict:
    """:func:`features` of the ``kinds`` mix, and with ``also`` each of those kinds made alone
    and given an equal share of the twins (a seeded draw per real picks which twin it keeps)."""
    raw = features(manifest, rows, reals, kinds, seed, settings)
    if not also:
        return raw
    slot = np.random.default_rng([seed, 3]).integers(len(kinds) + len(also), size=len(reals))
    raw = {k: np.array(v) for k, v in raw.items()}
    for j, kind in enumerate(also):
        extra = features(manifest, rows, reals, [kind], seed, settings)
        mine = slot == len(kinds) + j
        for k in ("xp", "xpt"):
            raw[k][mine] = extra[k][mine]
    return raw


def view_data(raw: dict, rows, reals: list[int], v: View) -> tuple[np.ndarray, Data]:
    """``v``'s test view of the sample's crops (the original crops) and the :class:`Data` a
    head is fitted on: the training view (their re-encoded copies with ``v.norm``), labels,
    sources and the pseudo-fakes with the row each was made from."""
    x = view(raw["x"], v.pool, v.l2, v.blocks)
    xt = view(raw["xt"], v.pool, v.l2, v.blocks) if v.norm else x
    xp = view(raw["xpt" if v.norm else "xp"], v.pool, v.l2, v.blocks)
    y = np.array([r.y for r in rows])
    src = np.array([r.source for r in rows])
    return x, Data(xt, y, src, xp, np.array(reals))


@dataclass(frozen=True)
class Data:
    """Training-view features ``xt`` of the sample's rows (labels, sources), and of the
    pseudo-fakes ``xp`` (the row each was made from; ``src_p``: its source)."""

    xt: np.ndarray
    y: np.ndarray
    src: np.ndarray
    xp: np.ndarray
    twin: np.ndarray

    @property
    def src_p(self) -> np.ndarray:
        return self.src[self.twin]


def fit_setup(setup: str, d: Data, tr: np.ndarray, keep: np.ndarray, v: View):
    """The head of ``setup`` (A-D) fitted on the training-view rows ``tr`` (their reals only
    for C) and, for B and C, the pseudo-fakes ``keep`` as fakes; for D, the pairs of kept
    pseudo-fakes and their reals. Grouped by source. ``v.inlp`` rounds of INLP on the
    training reals first, then with ``v.rmean`` their per-source means projected out; ``v.ens``
    fits a head per span of blocks and averages them with equal weights (each divided by its
    spread on the training rows), then Platt-scales: a function of the full feature matrix
    either way."""
    xt, xp = d.xt, d.xp
    project = None
    if v.inlp:
        project = source_nullspace(xt[tr & (d.y == 0)], d.src[tr & (d.y == 0)], v.inlp)
        xt, xp = project(xt), project(xp)
    if v.rmean:
        inner = project
        mean_project = source_means_out(xt[tr & (d.y == 0)], d.src[tr & (d.y == 0)])
        project = mean_project if inner is None else (lambda x: mean_project(inner(x)))
        xt, xp = mean_project(xt), mean_project(xp)
    if setup == "D":
        diff = xp[keep] - xt[d.twin[keep]]
        n = len(diff)
        xx = np.concatenate([diff, -diff])
        yy = np.repeat(np.array([1, 0]), n)
        gg = np.tile(d.src_p[keep], 2)
        if v.per_kind:
            raise SystemExit("-kind / -kindmax need real fakes: set-ups A to C, not D")
    else:
        xx, yy, gg, kk = training_rows(setup, d, tr, keep, xt, xp)
        if v.per_kind:
            return per_kind_head(xx, yy, gg, kk, v, project)
    parts = v.ens or 1
    width = xx.shape[1] // parts
    cuts = [slice(i * width, (i + 1) * width) for i in range(parts)]
    sw = cell_weights(gg, yy) if v.bal else None
    heads = [fit_linear_head(xx[:, c], yy, gg, C_GRID, sample_weight=sw)[0] for c in cuts]

    def logits(x: np.ndarray) -> np.ndarray:
        return np.stack([h(x[:, c]) for h, c in zip(heads, cuts, strict=True)], 1)

    weight, bias = fit_equal_weights(logits(xx), yy) if parts > 1 else (np.ones(1), 0.0)

    def head(x: np.ndarray) -> np.ndarray:
        return logits(project(x) if project else x) @ weight + bias

    return head


def training_rows(setup: str, d: Data, tr, keep, xt=None, xp=None):
    """The rows a head of set-up A, B or C is fitted on: features (``xt``/``xp``, default
    ``d``'s), labels, groups (sources) and each row's kind (its source's leave-one-kind-out
    fold, ``"pseudo"`` for the pseudo-fakes): the rows ``tr`` (their reals only for C) and, for
    B and C, the pseudo-fakes ``keep`` as fakes."""
    xt = d.xt if xt is None else xt
    xp = d.xp if xp is None else xp
    if setup == "C":
        tr = tr & (d.y == 0)
    kind_of = {s: k for k, srcs in FOLDS.items() for s in srcs}
    xs, ys, gs = [xt[tr]], [d.y[tr]], [d.src[tr]]
    ks = [np.array([kind_of.get(s, s) for s in d.src[tr]])]
    if setup in ("B", "C"):
        n = int(keep.sum())
        xs.append(xp[keep])
        ys.append(np.ones(n, np.int64))
        gs.append(d.src_p[keep])
        ks.append(np.full(n, "pseudo"))
    return tuple(np.concatenate(a) for a in (xs, ys, gs, ks))


def per_kind_head(xx, yy, gg, kk, v: View, project):
    """``-kind`` / ``-kindmax``: one head per kind of training fake (each kind of real fake, and
    the pseudo-fakes as one more), each fitted on that kind's fakes against every training
    real; their logits, each divided by its spread on the training rows, are averaged
    (``mean``: ``facetrust fuse --weights equal``'s rule) or the largest is taken (``max``: fake
    if any known kind of fake says so), then one Platt scaling."""
    kinds = sorted(set(kk[yy == 1]))
    heads = []
    for k in kinds:
        rows = (yy == 0) | (kk == k)
        heads.append(fit_linear_head(xx[rows], yy[rows], gg[rows], C_GRID)[0])

    def logits(x: np.ndarray) -> np.ndarray:
        return np.stack([h(x) for h in heads], 1)

    z = logits(xx)
    if v.per_kind == "mean":
        weight, bias = fit_equal_weights(z, yy)
        combine = lambda z: z @ weight + bias  # noqa: E731
    else:
        spread = z.std(0)
        (a,), b = fit_stack((z / spread).max(1, keepdims=True), yy)
        combine = lambda z: a * (z / spread).max(1) + b  # noqa: E731

    def head(x: np.ndarray) -> np.ndarray:
        return combine(logits(project(x) if project else x))

    return head


def oof_platt(setup: str, d: Data, x, tr, keep, v: View, inner: dict) -> tuple[float, float]:
    """Platt scaling ``(a, b)`` of a head of ``setup`` fitted on inner leave-one-kind-out
    logits: each inner kind's real and fake rows among ``tr``, on the test view ``x``, scored
    by a head fitted without that kind (nor its pseudo-fakes)."""
    z, yy = [], []
    for srcs in inner.values():
        inside = tr & np.isin(d.src, srcs)
        if len(np.unique(d.y[inside])) < 2:
            continue
        head = fit_setup(setup, d, tr & ~inside, keep & ~np.isin(d.src_p, srcs), v)
        z.append(head(x[inside]))
        yy.append(d.y[inside])
    (a,), b = fit_stack(np.concatenate(z)[:, None], np.concatenate(yy))
    return float(a), float(b)


def source_nullspace(x: np.ndarray, src: np.ndarray, rounds: int, c: float = 0.1):
    """INLP: ``rounds`` times, fit a multinomial logistic regression of ``src`` on the
    standardised ``x`` (already projected), and add its (orthonormalised) directions to the
    basis removed. Returns ``project(x)``: standardised, with that basis projected out."""
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(0)
    scale = np.where(x.std(0) > 1e-6, x.std(0), 1.0)
    z = (x - mean) / scale
    basis = np.zeros((z.shape[1], 0))
    for _ in range(rounds):
        zz = z - (z @ basis) @ basis.T
        w = LogisticRegression(C=c, max_iter=300).fit(zz, src).coef_.T  # (D, S) or (D, 1)
        w = w - basis @ (basis.T @ w)
        q, _ = np.linalg.qr(w)
        basis = np.concatenate([basis, q], 1)

    def project(x: np.ndarray) -> np.ndarray:
        z = (x - mean) / scale
        return z - (z @ basis) @ basis.T

    return project


def source_means_out(x: np.ndarray, src: np.ndarray):
    """``project(x)``: ``x`` with the span of the per-source means of ``x`` (each minus
    their average) projected out, so a linear head on it gives the reals of every training
    source the same mean logit (a soft form of the real-vs-real control's 0.5)."""
    means = np.stack([x[src == s].mean(0) for s in np.unique(src)])
    u, sv, _ = np.linalg.svd((means - means.mean(0)).T, full_matrices=False)
    q = u[:, sv > 1e-6 * sv.max()]  # rank: sources - 1

    def project(x: np.ndarray) -> np.ndarray:
        return x - (x @ q) @ q.T

    return project


def control(d: Data, x: np.ndarray, groups, setup: str, v: View) -> dict:
    """Real-vs-real control of the head of ``setup`` trained on every kind: out-of-fold logits
    (5 folds, a video or an image on one side; pseudo-fakes follow the real they were made
    from), then the AUC between the reals of each pair of sources (0.5: it cannot tell them
    apart)."""
    from sklearn.model_selection import GroupKFold

    from facetrust.train.shortcuts import real_vs_real

    logit = np.zeros(len(d.y))
    groups_p = groups[d.twin]
    for tr_idx, te_idx in GroupKFold(n_splits=5).split(x, d.y, groups):
        tr = np.zeros(len(d.y), bool)
        tr[tr_idx] = True
        keep = np.isin(groups_p, groups[tr_idx])
        head = fit_setup(setup, d, tr, keep, v)
        logit[te_idx] = head(x[te_idx])
    finding = real_vs_real(1 / (1 + np.exp(-logit)), d.src, d.y)
    pairs = finding.figures["pairs"]
    worst = max(pairs, key=lambda k: abs(pairs[k] - 0.5))
    return {"pairs": pairs, "outside": len(finding.flags), "worst": f"{worst} {pairs[worst]:.3f}"}


def twin_batches(manifest: Path, rows, reals: list[int], make, seed: int, batch: int = 32):
    """One pseudo-fake per real ``reals[k]`` (``make`` from :func:`make_fakes`; a donor for
    each, another real of the same source, as splices need), in batches: yields ``(b, fakes)``
    with ``fakes`` made from ``reals[b : b + batch]``. Seeded per real, so every caller that
    asks for the same mix gets the same twins."""
    rng = np.random.default_rng(seed)
    donor_of = [
        rng.choice([j for j in reals if rows[j].source == rows[i].source and j != i] or [i])
        for i in reals
    ]
    for b in range(0, len(reals), batch):
        fakes = []
        for i, d in zip(reals[b : b + batch], donor_of[b : b + batch], strict=True):
            lm = np.load(resolve(manifest, rows[i].landmarks)).astype(np.float32)[:, :2]
            dlm = np.load(resolve(manifest, rows[d].landmarks)).astype(np.float32)[:, :2]
            img, donor = read_crop(manifest, rows[i].crop), read_crop(manifest, rows[d].crop)
            fakes.append(make(img, lm, donor, dlm, np.random.default_rng([seed, i])))
        yield b, fakes


def features(
    manifest: Path, rows, reals: list[int], kinds: list[str], seed: int, settings=None
) -> dict:
    """Raw tokens ``(N, 12, 1536)`` of the sample's crops (``x``) and of their re-encoded copies
    (``xt``), and of one pseudo-fake per real with landmarks, as made (``xp``) and re-encoded
    (``xpt``). Cached in data/: the crops' tokens once for every mix of kinds
    (pseudo-loso-raw-crops.npz, or read from an older cache that holds them), the pseudo-fakes'
    per mix and ``settings`` (pseudo-loso-raw-<kinds>[<kind.field=value>...].npz; one made with
    other makers' settings or resynth weights is made again); ``-seedN`` before ``.npz`` for a
    sample drawn with another seed."""
    from facetrust.data.normalise import Normaliser
    from facetrust.models.clip import shared_clip_vit_b16
    from facetrust.train.config import DataConfig

    keys = [r.crop for r in rows]
    mine = {k: v for k, v in (settings or {}).items() if k in kinds}
    make, about = make_fakes(kinds, mine)
    tag = "".join(
        f"[{k}.{f}={v}]".replace("/", "_") for k, kv in sorted(mine.items()) for f, v in kv.items()
    )
    sfx = f"-seed{seed}" if seed else ""  # another seed draws another sample: its own files
    twins_cache = Path(f"data/pseudo-loso-raw-{'+'.join(kinds)}{tag}{sfx}.npz")
    crops_cache = Path(f"data/pseudo-loso-raw-crops{sfx}.npz")
    arrays: dict[str, np.ndarray] = {}
    for cache in [twins_cache, crops_cache, *sorted(Path("data").glob("pseudo-loso-raw-*.npz"))]:
        if cache.is_file():
            with np.load(cache) as z:
                if list(z["keys"]) == keys:
                    made_so = "about" not in z.files or str(z["about"]) == about  # older: as now
                    want = ("xp", "xpt") if cache == twins_cache and made_so else ()
                    for k in ("x", "xt", *want):
                        if k in z.files and k not in arrays:
                            arrays[k] = z[k]
    if len(arrays) == 4:
        return arrays
    tower = shared_clip_vit_b16()
    scale = DataConfig.model_fields["normalise_scale"].default  # the training recipe's
    normaliser = Normaliser(size=None, scale=tuple(scale))
    t0 = time.time()
    if "x" not in arrays:
        parts: dict[str, list] = {"x": [], "xt": []}
        for b in range(0, len(rows), 32):
            crops = [read_crop(manifest, r.crop) for r in rows[b : b + 32]]
            parts["x"].append(raw_features(tower, crops))
            copies = [
                normaliser(c, np.random.default_rng([seed, 1, b + k])) for k, c in enumerate(crops)
            ]
            parts["xt"].append(raw_features(tower, copies))
            print(
                f"  real/fake features {b + len(crops)}/{len(rows)} ({time.time() - t0:.0f} s)",
                flush=True,
            )
        arrays.update({k: np.concatenate(v) for k, v in parts.items()})
        crops_cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(crops_cache, keys=np.array(keys), x=arrays["x"], xt=arrays["xt"])
    if "xp" in arrays:
        return arrays
    parts = {"xp": [], "xpt": []}
    for b, fakes in twin_batches(manifest, rows, reals, make, seed):
        parts["xp"].append(raw_features(tower, fakes))
        copies = [
            normaliser(f, np.random.default_rng([seed, 2, i]))
            for f, i in zip(fakes, reals[b : b + 32], strict=True)
        ]
        parts["xpt"].append(raw_features(tower, copies))
        print(
            f"  pseudo-fake features {b + len(fakes)}/{len(reals)} ({time.time() - t0:.0f} s)",
            flush=True,
        )
    twins = {k: np.concatenate(v) for k, v in parts.items()}
    twins_cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(twins_cache, keys=np.array(keys), about=np.array(about), **twins)
    return {**arrays, **twins}


if __name__ == "__main__":
    main()
