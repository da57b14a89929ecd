"""Fit the frozen experts and their fusion around a trained CNN; write one fused checkpoint.

Data discipline (the splits are the CNN's own, from its training config, so nothing leaks):

- expert heads (CLIP probe, frequency) are fitted on the **train** split, on both feature views
  (clean and degraded, see :mod:`facetrust.train.features`; or, routed, a clean-view head and
  a both-view head mixed per face by a view router, :func:`fit_routed_head`), and, with
  ``FusionSpec.pseudo``, on one pseudo-fake made from each real of the train split (its
  content-aligned twin, so no training source is one-class; sbi, splice, trace, resynth:
  :mod:`facetrust.data.pseudo`) as extra fake rows grouped with the source of their real; their
  regularisation strength is chosen by cross-validation that keeps each source's rows together
  (so the head is picked for transfer to sources it has not seen, not for memorising one);
- the logistic stack of the CNN and expert logits, the threshold, and any calibration are
  fitted on the **calib** split, which none of the experts trained on;
- figures are reported on the **val** split (and on the held-out **test** sources of a
  leave-one-source-out config), clean view only, as detection sees faces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facetrust.data.manifest import ManifestRow
from facetrust.detect.experts import ClipExpert, Expert, LinearHead, RoutedHead, expert_class
from facetrust.detect.scoring import FaceScorer
from facetrust.errors import InputError, ModelError
from facetrust.models.clip_pool import check_size, pool_parts
from facetrust.train.features import VIEWS, checked_views

__all__ = [
    "FusionSpec",
    "fit_fusion",
    "cell_weights",
    "fit_linear_head",
    "fit_routed_head",
    "fusion_spec",
    "parse_c",
    "parse_clip_layers",
    "parse_fold",
    "parse_pseudo",
    "score_rows",
    "tuned_norms_of",
    "twin_features",
]

C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3)


def parse_clip_layers(text: str) -> tuple[int, ...]:
    """``"6,9,12"`` -> ``(6, 9, 12)``; ``"1-3,9"`` -> ``(1, 2, 3, 9)``; ``"all"`` -> CLIP
    blocks 1-12. InputError otherwise."""
    if text.strip().lower() == "all":
        return tuple(range(1, 13))
    layers: tuple[int, ...] = ()
    try:
        for part in filter(str.strip, text.split(",")):
            lo, dash, hi = part.partition("-")
            layers += tuple(range(int(lo), int(hi) + 1)) if dash else (int(lo),)
    except ValueError:
        layers = ()
    layers = tuple(dict.fromkeys(layers))  # each block once, in the order given
    if not layers or min(layers) < 1 or max(layers) > 12:
        raise InputError(f"--clip-layers: 'all' or blocks 1-12 ('6,9,12', '7-12'), got {text!r}")
    return layers


def parse_pseudo(text: str) -> dict[str, float]:
    """``"sbi,splice:0.5"`` -> ``{"sbi": 1.0, "splice": 0.5}`` (ratios default to 1);
    ``""`` or ``"none"`` -> ``{}``. Unknown kinds and bad ratios: ``InputError``."""
    from facetrust.data.pseudo import PseudoFakeMix

    if text.strip().lower() in ("", "none"):
        return {}
    kinds: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        kind, _, ratio = part.partition(":")
        try:
            kinds[kind.strip()] = float(ratio) if ratio.strip() else 1.0
        except ValueError:
            raise InputError(f"--pseudo: ratio of {kind.strip()!r} is not a number") from None
    PseudoFakeMix(kinds)  # refuses unknown kinds, negative ratios, all zero
    return kinds


def parse_c(text: float | str | None) -> tuple[float | None, dict[str, float]]:
    """``--c``: ``"0.003"`` (every head) or ``"clip=0.0003,frequency=0.3"`` (per expert; the
    others picked by cross-validation) -> ``(C for every head or None, {expert: C})``."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None, {}

    def positive(value, what: str) -> float:
        try:
            v = float(value)
        except ValueError:
            v = float("nan")
        if not (np.isfinite(v) and v > 0):
            raise InputError(f"--c must be a positive number{what}, got {value!r}")
        return v

    if isinstance(text, str) and "=" in text:
        out: dict[str, float] = {}
        for part in text.split(","):
            name, _, value = part.partition("=")
            if not name.strip() or not value.strip():
                raise InputError(f"--c: expected EXPERT=C, got {part.strip()!r}")
            out[name.strip()] = positive(value.strip(), f" for {name.strip()}")
        return None, out
    return positive(text, ""), {}


def parse_fold(text: str) -> tuple[str, list[str], str]:
    """``"gan=gan140k,stylegan2small:runs/loso/gan/best.safetensors"`` -> the fold's name,
    its held-out sources and the CNN checkpoint trained without them (``InputError`` when the
    text is not in that form or the checkpoint is missing)."""
    name, eq, rest = text.partition("=")
    sources, colon, checkpoint = rest.partition(":")
    held = [s.strip() for s in sources.split(",") if s.strip()]
    if not (eq and colon and name.strip() and held and checkpoint.strip()):
        raise InputError(
            f"--fold {text!r}: expected NAME=SOURCE[,SOURCE...]:CNN_CHECKPOINT, e.g. "
            "gan=gan140k,stylegan2small:runs/loso/gan/best.safetensors"
        )
    if not Path(checkpoint.strip()).is_file():
        raise InputError(f"--fold {name.strip()}: no CNN checkpoint at {checkpoint.strip()}")
    return name.strip(), held, checkpoint.strip()


@dataclass
class FusionSpec:
    """Which experts to fit and how.

    ``experts`` are registered expert names (``facetrust.detect.experts.list_experts()``);
    ``options`` gives an expert its keyword options, e.g. ``{"clip": {"layers": [6, 9, 12]}}``
    (default: the expert's own defaults; CLIP reads all 12 blocks, as the shipped default).
    """

    experts: tuple[str, ...] = ("clip", "frequency")
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    c_grid: tuple[float, ...] = C_GRID
    # one C for a named expert's head instead of c_grid's pick, e.g. {"clip": 0.0003}
    expert_c: dict[str, float] = field(default_factory=dict)
    threshold_rule: str = "fpr:0.05"
    notes: dict[str, Any] = field(default_factory=dict)
    # what the logistic stack is fitted on: "calib" (the calib split, in-distribution) or
    # "oof" (out-of-fold leave-one-kind-out logits of the train split: each input scored on
    # kinds it did not train on, so the stack trusts what transfers; measured on a frozen CLIP
    # head, it is then under-confident on the kinds it was trained on: in-distribution ECE
    # 0.27-0.32 against 0.08-0.11, benchmarks/calibration_transfer.py). "oof" needs ``folds``
    # (fold name -> held-out sources) and ``cnn_folds`` (fold name -> a CNN checkpoint
    # trained without that fold, as benchmarks/loso.py writes them).
    stack: str = "calib"
    # how the stack weighs its inputs: "learned" (a logistic regression picks the weights) or
    # "equal" (each input divided by its spread, averaged with equal weights, then one Platt
    # scaling: nothing is learnt about which input to trust, so an input that looks strong on
    # the kinds of fake the stack sees cannot crowd out one that transfers better; on the
    # leave-one-kind-out folds of benchmarks/pseudo_cnn.py: mean AUC 0.681 vs 0.622 learned)
    weights: str = "learned"
    folds: dict[str, list[str]] = field(default_factory=dict)
    cnn_folds: dict[str, str] = field(default_factory=dict)
    # pseudo-fake kinds and ratios ({"sbi": 1, "splice": 1, "trace": 1}) whose twins of the
    # train split's reals join the expert heads' training as fakes; {} = none
    pseudo: dict[str, float] = field(default_factory=dict)
    # weigh the heads' training rows so every (source, label) cell counts the same
    # (cell_weights): a big source, or a source of fakes only, no longer outweighs the others
    balance: bool = False
    # the views each expert head trains on: the clean crop and its degraded copy (shrunk and
    # re-encoded, so size and codec cannot separate the classes), or the clean one alone (on
    # every face of the shared data: leave-one-kind-out 0.642 against 0.615, but val faces
    # seen degraded 0.837 against 0.912; benchmarks/clip_probe_loso.py --views)
    views: tuple[str, ...] = VIEWS
    # a clean-view head and a both-view head per expert, mixed per face by a view router
    # (fit_routed_head; needs both views): on every face of the shared data 0.641 on unseen
    # kinds, 0.957 on clean and 0.912 on degraded val faces (clip_probe_loso.py --routed)
    routed: bool = False

    def __post_init__(self) -> None:
        # refused when the spec is made, before any feature is read or head fitted
        checked_views(self.views)
        if self.routed and tuple(self.views) != VIEWS:
            raise InputError("a routed head needs both views (clean and degraded)")
        stray = sorted(set(self.expert_c) - set(self.experts))
        if stray:
            raise InputError(f"--c names experts not fitted: {stray}")
        if self.pseudo:
            from facetrust.data.pseudo import PseudoFakeMix

            PseudoFakeMix(self.pseudo)
        if self.stack not in ("calib", "oof"):
            raise InputError(f"stack must be 'calib' or 'oof', got {self.stack!r}")
        if self.weights not in ("learned", "equal"):
            raise InputError(f"weights must be 'learned' or 'equal', got {self.weights!r}")

    def build(self, runtime: dict[str, dict] | None = None) -> list[Expert]:
        """Unfitted experts as named (``ModelError`` listing the registered ones if unknown)."""
        runtime = runtime or {}
        unknown = set(self.options) - set(self.experts)
        if unknown:
            raise InputError(f"options given for experts not fitted: {sorted(unknown)}")
        return [
            expert_class(n)(**self.options.get(n, {}), **runtime.get(n, {})) for n in self.experts
        ]


def fusion_spec(
    experts: str = "clip,frequency",
    *,
    clip_layers: str = "all",
    clip_pool: str = "cls",
    clip_l2: bool = False,
    clip_norms: Path | None = None,
    clip_size: int = 224,
    weights: str = "learned",
    pseudo: str = "",
    folds: list[str] | tuple[str, ...] = (),
    balance: bool = False,
    views: str = "both",
    c: float | str | None = None,
) -> FusionSpec:
    """A :class:`FusionSpec` from ``facetrust fuse``'s options, as text (the command line and
    benchmarks/loso.py build theirs here): ``experts`` comma-separated, ``clip_layers`` for
    :func:`parse_clip_layers`, ``pseudo`` for :func:`parse_pseudo`, ``folds`` for
    :func:`parse_fold` (any: the stack is fitted out of fold), ``c`` for :func:`parse_c` (one
    regularisation strength for every head, or per expert, instead of the grouped
    cross-validation's pick). ``InputError`` names the flag."""
    names = tuple(v.strip() for v in experts.split(",") if v.strip())
    layers = parse_clip_layers(clip_layers)
    try:
        pool_parts(clip_pool)
    except ValueError as e:
        raise InputError(f"--clip-pool: {e}") from None
    asked = {"--clip-norms": clip_norms is not None, "--clip-pool": clip_pool != "cls"}
    asked["--clip-l2"] = clip_l2
    asked["--clip-size"] = clip_size != 224
    try:
        check_size(clip_size, clip_pool)
    except ValueError as e:
        raise InputError(f"--clip-size: {e}") from None
    stray = [flag for flag, on in asked.items() if on] if "clip" not in names else []
    if stray:
        raise InputError(f"{stray[0]} needs the clip expert in --experts")
    options: dict[str, dict[str, Any]] = (
        {"clip": {"layers": list(layers)}} if "clip" in names else {}
    )
    if clip_pool != "cls" or clip_l2:
        options["clip"].update(pool=clip_pool, l2=clip_l2)
    if clip_size != 224:
        options["clip"]["size"] = clip_size
    if clip_norms is not None:
        options["clip"]["norms"] = tuned_norms_of(clip_norms)
    if views not in ("both", "clean", "routed"):
        raise InputError(f"--views must be 'both', 'clean' or 'routed', got {views!r}")
    every_c, expert_c = parse_c(c)
    parsed = [parse_fold(f) for f in folds]
    if len({name for name, _, _ in parsed}) < len(parsed):
        raise InputError("--fold: each fold needs its own name")
    return FusionSpec(
        experts=names,
        options=options,
        weights=weights,
        pseudo=parse_pseudo(pseudo),
        balance=balance,
        c_grid=C_GRID if every_c is None else (every_c,),
        expert_c=expert_c,
        views=VIEWS[:1] if views == "clean" else VIEWS,
        routed=views == "routed",
        stack="oof" if parsed else "calib",
        folds={name: held for name, held, _ in parsed},
        cnn_folds={name: ckpt for name, _, ckpt in parsed},
    )


def tuned_norms_of(checkpoint: Path) -> dict[str, str]:
    """The LayerNorms of a trained ``clip_vit_b16_ln`` checkpoint, encoded for the CLIP
    expert's ``norms`` option (``InputError`` for any other checkpoint)."""
    from facetrust.models import load_checkpoint, read_checkpoint_meta
    from facetrust.models.clip_tuned import encode_norms

    meta = read_checkpoint_meta(checkpoint)
    if meta.arch != "clip_vit_b16_ln":
        raise InputError(
            f"{checkpoint} is a {meta.arch!r} model; tuned LayerNorms come from a "
            "clip_vit_b16_ln checkpoint (configs/clip-ln.yaml)"
        )
    model, _ = load_checkpoint(checkpoint)
    return encode_norms(model.tuned_norms())


def _standardised(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(z, mean, scale)``: one float64 copy of ``x`` standardised in place (the caller's
    ``x`` untouched), and the column means and scales that did it."""
    z = np.array(x, np.float64)
    mean = z.mean(0)
    scale = z.std(0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    z -= mean
    z /= scale
    return z, mean, scale


def fit_linear_head(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    c_grid: tuple[float, ...] = C_GRID,
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
) -> tuple[LinearHead, dict[str, Any]]:
    """L2 logistic regression on standardised features; C picked by grouped cross-validation.

    ``groups`` keeps rows of one group (a source) in one fold, so the chosen C is the one that
    transfers best across sources: the score of a C is the mean AUC over the held-out groups
    that have both classes (pooled AUC over all held-out rows when none has).
    ``sample_weight`` weighs the rows in every fit (e.g. :func:`cell_weights`).
    Returns the head and ``{"C", "cv_auc": {C: auc}}``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold

    y = np.asarray(y, np.int64)
    w = None if sample_weight is None else np.asarray(sample_weight, np.float64)
    if len(np.unique(y)) < 2:
        raise InputError("the expert head needs real and fake training faces")
    z, mean, scale = _standardised(x)
    n_groups = len(np.unique(groups))
    cv_auc: dict[float, float] = {}
    if n_groups >= 3 and len(c_grid) > 1:
        folds = GroupKFold(n_splits=min(4, n_groups))
        for c in c_grid:
            pred = np.zeros(len(y))
            for tr, te in folds.split(z, y, groups):
                if len(np.unique(y[tr])) < 2:
                    pred[te] = 0.0
                    continue
                m = LogisticRegression(C=c, max_iter=3000, random_state=seed)
                m.fit(z[tr], y[tr], sample_weight=None if w is None else w[tr])
                pred[te] = m.decision_function(z[te])
            two_class = [g for g in np.unique(groups) if len(np.unique(y[groups == g])) == 2]
            if two_class:
                cv_auc[c] = float(
                    np.mean([roc_auc_score(y[groups == g], pred[groups == g]) for g in two_class])
                )
            else:
                cv_auc[c] = float(roc_auc_score(y, pred))
        best = max(cv_auc, key=lambda c: cv_auc[c])
    else:
        best = c_grid[len(c_grid) // 2]
    m = LogisticRegression(C=best, max_iter=3000, random_state=seed).fit(z, y, sample_weight=w)
    head = LinearHead(mean, scale, m.coef_[0].astype(np.float64), float(m.intercept_[0]))
    return head, {"C": best, "cv_auc": {str(k): round(v, 4) for k, v in cv_auc.items()}}


def fit_routed_head(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    view: np.ndarray,
    c_grid: tuple[float, ...] = C_GRID,
    balance: bool = False,
) -> tuple[RoutedHead, dict[str, Any]]:
    """A :class:`~facetrust.detect.experts.RoutedHead` on rows ``x`` of two views (``view``:
    0 for a clean crop, 1 for its degraded copy): the ``both`` head on every row (its C picked
    by grouped cross-validation as :func:`fit_linear_head` picks it), the ``clean`` head on the
    clean rows and the ``router`` (degraded or not) on every row, both at that C.
    Returns the head and the both head's ``{"C", "cv_auc"}`` with ``router_accuracy`` (share of
    the training rows routed to their own view's head)."""
    view = np.asarray(view, np.int64)
    if view.shape != (len(x),) or set(np.unique(view)) != {0, 1}:
        raise InputError("a routed head needs rows of the clean view (0) and the degraded (1)")
    both, info = _fit_head(x, y, groups, c_grid, balance)
    c = (info["C"],)
    sharp = view == 0
    clean, _ = _fit_head(x[sharp], y[sharp], groups[sharp], c, balance)
    router, _ = _fit_head(x, view, groups, c, False)
    head = RoutedHead(clean, both, router)
    info["router_accuracy"] = round(float(((head.route(x) > 0.5) == view).mean()), 4)
    return head, info


def _view_labels(views: list[np.ndarray], extra=None) -> np.ndarray:
    """The view (its index in ``views``) of each row :func:`_head_rows` makes of them."""
    parts = [np.full(len(v), i, np.int64) for i, v in enumerate(views)]
    if extra is not None:
        parts += [np.full(len(v), i, np.int64) for i, v in enumerate(extra[0])]
    return np.concatenate(parts)


def fit_expert_head(
    views: list[np.ndarray],
    y: np.ndarray,
    groups: np.ndarray,
    extra=None,
    c_grid: tuple[float, ...] = C_GRID,
    balance: bool = False,
    routed: bool = False,
):
    """An expert's head on the ``views`` of its faces (and the pseudo-fakes ``extra``):
    one linear head on every view, or with ``routed`` a :func:`fit_routed_head`."""
    x, yy, gg = _head_rows(views, y, groups, extra)
    if routed:
        return fit_routed_head(x, yy, gg, _view_labels(views, extra), c_grid, balance)
    return _fit_head(x, yy, gg, c_grid, balance)


def cell_weights(groups: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row weights giving every (group, label) cell the same total weight, mean 1: a source
    with ten times the faces, or fakes without reals, no longer outweighs the others."""
    cells = np.array([f"{g}\x00{v}" for g, v in zip(groups, y, strict=True)])
    _, inverse, counts = np.unique(cells, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    return w * len(w) / w.sum()


def oof_head_logits(
    views: list[np.ndarray],
    y: np.ndarray,
    sources: np.ndarray,
    folds: dict[str, list[str]],
    c: float,
    pseudo: tuple[list[np.ndarray], np.ndarray] | None = None,
    balance: bool = False,
    routed: bool = False,
) -> np.ndarray:
    """Out-of-fold logits of a linear head: for each fold, a head fitted (at strength ``c``)
    on the rows of the other sources, on every view in ``views`` (the first is the clean one),
    scores the fold's rows on the clean view. Rows of no fold are NaN. ``pseudo`` (views of
    pseudo-fakes, the sources of their reals) adds the other sources' pseudo-fakes as fakes;
    ``balance`` weighs each head's rows by :func:`cell_weights`; ``routed`` fits
    :func:`fit_routed_head` instead."""
    out = np.full(len(y), np.nan)
    for held in folds.values():
        inside = np.isin(sources, list(held))
        if not inside.any():
            continue
        extra = None
        if pseudo is not None:
            keep = ~np.isin(pseudo[1], list(held))
            extra = ([v[keep] for v in pseudo[0]], pseudo[1][keep])
        labels = y[~inside] if extra is None else np.r_[y[~inside], np.ones(len(extra[1]))]
        if len(np.unique(labels)) < 2:
            raise InputError(f"fold {sorted(held)}: the other sources lack real or fake faces")
        rest = [v[~inside] for v in views]
        head, _ = fit_expert_head(rest, y[~inside], sources[~inside], extra, (c,), balance, routed)
        out[inside] = head(views[0][inside])
    return out


def _head_rows(
    views: list[np.ndarray],
    y: np.ndarray,
    groups: np.ndarray,
    pseudo: tuple[list[np.ndarray], np.ndarray] | None = None,
    controls: tuple[list[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A head's training rows ``(x, y, groups)``: every view of the faces, then every view of
    the pseudo-fakes ``pseudo`` (their views, the sources of their reals), labelled fake, then
    every view of their real-labelled controls ``controls`` (same layout), labelled real."""
    x, yy, gg = list(views), [y] * len(views), [groups] * len(views)
    for extra, label in ((pseudo, 1), (controls, 0)):
        if extra is not None:
            e_views, e_sources = extra
            x += e_views
            yy += [np.full(len(e_sources), label, np.int64)] * len(e_views)
            gg += [e_sources] * len(e_views)
    return np.concatenate(x), np.concatenate(yy), np.concatenate(gg)


def _fit_head(x, y, groups, c_grid, balance: bool):
    """:func:`fit_linear_head`, with :func:`cell_weights` when ``balance``."""
    weights = cell_weights(groups, y) if balance else None
    return fit_linear_head(x, y, groups, c_grid, sample_weight=weights)


def fit_stack(
    z: np.ndarray, y: np.ndarray, c: float = 1.0, sample_weight: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """The logistic stack over input logits ``z`` ``(N, inputs)``: weights and bias
    (``sample_weight``: a weight per row, e.g. :func:`cell_weights`)."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        raise InputError("the stack needs real and fake faces")
    m = LogisticRegression(C=c, max_iter=1000).fit(z, y, sample_weight=sample_weight)
    return m.coef_[0].astype(np.float64), float(m.intercept_[0])


def fit_equal_weights(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """The equal-weight stack over input logits ``z`` ``(N, inputs)``: each input divided by
    its spread (standard deviation over ``z``), the mean of those, then a Platt scaling fitted
    on ``y``. Returned as the weights and bias of the same linear stack (``a / (k * spread_i)``
    and ``c``), so a checkpoint reads it as it reads a learned one."""
    z = np.asarray(z, np.float64)
    if z.ndim != 2 or not len(z):
        raise InputError("the stack needs a (faces, inputs) array of logits")
    spread = z.std(0)
    if (spread < 1e-9).any():
        raise InputError("an input of the stack is constant: it cannot be weighted by spread")
    mean = (z / spread).mean(1, keepdims=True)
    (a,), c = fit_stack(mean, y)
    return a / (z.shape[1] * spread), c


def _labels(rows: list[ManifestRow]) -> np.ndarray:
    return np.array([r.y for r in rows], dtype=np.int64)


def score_rows(scorer: FaceScorer, rows: list[ManifestRow], manifest: Path, cnn_only=False):
    """The scoring core on the cached crops of ``rows``: ``FaceScores`` (or, with ``cnn_only``,
    the CNN's logits), read and scored in batches so memory stays flat."""
    from facetrust.data.manifest import read_crop

    parts = []
    step = max(scorer.batch_size, 64)
    for i in range(0, len(rows), step):
        crops = [read_crop(manifest, r.crop) for r in rows[i : i + step]]
        parts.append(scorer.cnn_logits(crops) if cnn_only else scorer.columns(crops))
    if cnn_only:
        return np.concatenate(parts) if parts else np.zeros(0)
    cols = np.concatenate(parts) if parts else np.zeros((0, len(scorer.inputs)))
    return scorer.from_columns(cols)


def fit_fusion(
    splits: dict[str, list[ManifestRow]],
    manifest: Path,
    cnn_checkpoint: Path,
    features,
    out: Path,
    spec: FusionSpec | None = None,
    *,
    name: str | None = None,
    runtime: dict[str, dict] | None = None,
    pseudo=None,
    log=print,
) -> dict[str, Any]:
    """Fit heads + stack, save ``out`` (CNN weights + experts in the metadata), return metrics.

    ``features`` is a :class:`~facetrust.train.features.FeatureTable` covering every split;
    ``runtime`` passes objects to the experts (e.g. ``{"clip": {"tower": module}}``);
    ``pseudo`` is ``(real rows, FeatureTable of their pseudo-fake twins)`` (see
    :func:`~facetrust.train.features.pseudo_twins`), needed when ``spec.pseudo`` is set.
    """
    from facetrust.data.manifest import check_contract, manifest_contract
    from facetrust.detect.calibration import apply_calibration, choose_threshold
    from facetrust.detect.experts import ExpertSet
    from facetrust.detect.scoring import crop_contract
    from facetrust.models import load_checkpoint, save_checkpoint
    from facetrust.models.checkpoint import Calibration
    from facetrust.train.metrics import evaluate

    spec = spec or FusionSpec()
    try:
        unfitted = spec.build(runtime)
    except ModelError as e:
        raise InputError(str(e)) from None
    model, meta = load_checkpoint(cnn_checkpoint, device="cpu")
    cnn = FaceScorer(model, meta.model_copy(update={"experts": {}}), batch_size=64)
    train, calib, val = splits["train"], splits["calib"], splits["val"]
    test = splits.get("test", [])
    y_train = _labels(train)
    groups = np.array([r.source for r in train])
    idx_train = features.rows(train)

    contract = crop_contract(meta)
    check_contract(manifest_contract(train), contract, str(manifest), str(cnn_checkpoint))
    experts: dict[str, Any] = {}
    fit_info: dict[str, Any] = {}
    twins = _pseudo_views(spec, pseudo, train)
    fit_info["views"] = list(spec.views)  # what the expert heads trained on
    fit_info["routed"] = spec.routed
    if twins is not None:
        fit_info["pseudo"] = {"kinds": dict(spec.pseudo), "faces": len(twins.sources)}
        log(f"fusion: {len(twins.sources)} pseudo-fakes ({', '.join(spec.pseudo)}) join the heads")
    for ex in unfitted:
        views = [features.get(ex, v, idx_train) for v in spec.views]
        extra = None if twins is None else twins.of(ex, spec.views)
        grid = (spec.expert_c[ex.name],) if ex.name in spec.expert_c else spec.c_grid
        ex.head, info = fit_expert_head(
            views, y_train, groups, extra, grid, spec.balance, spec.routed
        )
        line = f"fusion: {ex.name} head C={info['C']} (grouped CV AUC {info['cv_auc']})"
        if spec.routed:
            line += f", routed ({info['router_accuracy']:.1%} of rows to their view)"
        log(line)
        experts[ex.name] = ex.to_spec()
        fit_info[ex.name] = info

    def expert_columns(rows: list[ManifestRow]) -> np.ndarray:
        """(N, 1 + len(experts)) logits: CNN (through the scoring core), then each expert's
        head on its cached features of the clean view (what the expert computes on the crop)."""
        cols = [score_rows(cnn, rows, manifest, cnn_only=True)]
        idx = features.rows(rows)
        cols += [ex.head(features.get(ex, "clean", idx)) for ex in unfitted]
        return np.stack(cols, axis=1)

    inputs = ["cnn", *spec.experts]
    z_calib = expert_columns(calib)
    y_calib = _labels(calib)
    if spec.stack == "oof":
        z_stack, y_stack, oof_report = _oof_columns(
            spec, unfitted, fit_info, train, features, manifest, log, twins
        )
        fit_info["oof"] = oof_report
    else:  # "calib"
        z_stack, y_stack = z_calib, y_calib
    fit = fit_stack if spec.weights == "learned" else fit_equal_weights
    weight, bias = fit(z_stack, y_stack)
    experts["fusion"] = {
        "inputs": inputs,
        "weight": [float(w) for w in weight],
        "bias": bias,
        "fitted_on": spec.stack,
        "weights": spec.weights,
    }
    fused = ExpertSet(experts, runtime=runtime)  # validates the spec as detection reads it
    # the logistic stack is itself a calibration (fitted on calib, or out of fold)
    calibration = Calibration(method="none")
    p_calib = apply_calibration(fused.combine(z_calib), calibration)
    threshold, rule_line = choose_threshold(p_calib, y_calib, spec.threshold_rule)
    log(f"fusion: stack weights {dict(zip(inputs, experts['fusion']['weight'], strict=True))}")

    metrics: dict[str, Any] = {"fusion_fit": fit_info}
    per_input: dict[str, Any] = {}
    for split_name, rows in (("val", val), ("test", test)):
        if not rows:
            continue
        z = expert_columns(rows)
        p = apply_calibration(fused.combine(z), calibration)
        metrics[split_name] = evaluate(rows, p, threshold)
        y = _labels(rows)
        if len(np.unique(y)) == 2:
            from sklearn.metrics import roc_auc_score

            per_input[split_name] = {
                n: round(float(roc_auc_score(y, z[:, i])), 4) for i, n in enumerate(inputs)
            }
        metrics.setdefault("_probs", {})[split_name] = p
    metrics["auc_per_input"] = per_input
    new_meta = meta.model_copy(
        update={
            "experts": experts,
            "crop_size": contract.size,  # the contract travels (older CNN files: made explicit)
            "calibration": calibration,
            "threshold": float(threshold),
            "threshold_rule": rule_line,
            "name": name or meta.name,
            "metrics": {
                **{k: v for k, v in metrics.items() if k != "_probs"},
                "cnn_metrics": meta.metrics,
            },
        }
    )
    save_checkpoint(out, model, new_meta)
    log(f"fusion: wrote {out}")
    return metrics


@dataclass(frozen=True)
class _Twins:
    """The pseudo-fake twins of the train split's reals: their feature table, the sources of
    their reals and their positions in the table."""

    table: Any
    sources: np.ndarray
    positions: np.ndarray

    def of(self, expert: Expert, views=VIEWS) -> tuple[list[np.ndarray], np.ndarray]:
        """``expert``'s features of the twins in ``views``, and their sources."""
        return [self.table.get(expert, v, self.positions) for v in views], self.sources


def _pseudo_views(spec: FusionSpec, pseudo, train: list[ManifestRow]) -> _Twins | None:
    """The pseudo-fake twins of ``train``'s reals, or None when the spec asks for none."""
    if not spec.pseudo:
        return None
    if pseudo is None:
        raise InputError("the fusion spec asks for pseudo-fakes but none were extracted")
    reals, table = pseudo
    in_train = {r.crop for r in train}
    reals = [r for r in reals if r.crop in in_train]
    if not reals:
        raise InputError("no pseudo-fakes of the train split's reals")
    return _Twins(table, np.array([r.source for r in reals]), table.rows(reals))


def _oof_columns(spec, unfitted, fit_info, train, features, manifest, log, twins=None):
    """Leave-one-kind-out logits of the train rows inside ``spec.folds``: each fold's CNN
    scores the kind it did not train on, and so does each expert's head refitted on every
    other train row, those of sources in no fold included, as the shipped head is (with the
    other sources' pseudo-fakes, when ``twins``)."""
    from sklearn.metrics import roc_auc_score

    if not spec.folds:
        raise InputError("stack 'oof' needs folds: fold name -> held-out sources")
    missing = sorted(set(spec.folds) - set(spec.cnn_folds))
    if missing:
        raise InputError(
            f"stack 'oof' needs a CNN trained without each fold; none for {missing} "
            "(benchmarks/loso.py trains them)"
        )
    covered = {s for held in spec.folds.values() for s in held}
    y_all = _labels(train)
    src_all = np.array([r.source for r in train])
    kept = np.isin(src_all, list(covered))  # the stack's rows: those some fold holds out
    rows = [r for r, keep in zip(train, kept, strict=True) if keep]
    y, src = y_all[kept], src_all[kept]
    cols = [np.full(len(rows), np.nan)]
    for fold, held in spec.folds.items():
        inside = np.isin(src, list(held))
        if inside.any():
            fold_cnn = FaceScorer.from_checkpoint(spec.cnn_folds[fold], batch_size=64)
            part = [r for r, keep in zip(rows, inside, strict=True) if keep]
            cols[0][inside] = score_rows(fold_cnn, part, manifest, cnn_only=True)
    idx = features.rows(train)
    for ex in unfitted:
        views = [features.get(ex, v, idx) for v in spec.views]
        extra = None if twins is None else twins.of(ex, spec.views)
        c = fit_info[ex.name]["C"]
        z_ex = oof_head_logits(
            views, y_all, src_all, spec.folds, c, extra, spec.balance, spec.routed
        )
        del views
        cols.append(z_ex[kept])
    z = np.stack(cols, axis=1)
    report = {}
    for fold, held in spec.folds.items():
        inside = np.isin(src, list(held))
        if len(np.unique(y[inside])) == 2:
            report[fold] = {
                n: round(float(roc_auc_score(y[inside], z[inside, i])), 4)
                for i, n in enumerate(["cnn", *spec.experts])
            }
    log(f"fusion: out-of-fold AUC per input {report}")
    return z, y, report


def twin_features(
    rows: list[ManifestRow],
    manifest: Path,
    features_dir: Path,
    kinds: dict[str, float],
    experts: list[Expert],
    log=print,
    controls: bool = False,
    views: tuple[str, ...] = VIEWS,
) -> tuple[list[ManifestRow], Any]:
    """The pseudo-fake twins of ``rows``' reals (one each, :func:`~facetrust.train.features.
    pseudo_twins`) and ``experts``' features of them, extracted (or resumed) in a folder of
    ``features_dir`` named by the kinds and ratios, so a mix of other ratios gets its own.
    ``controls``: the twins' real-labelled controls instead, in a folder ``...-controls``.
    ``views``: as :func:`~facetrust.train.features.extract_features` (the clean one alone for
    heads that train on it: half the time)."""
    from facetrust.train.features import extract_features, pseudo_twins

    kinds = dict(sorted(kinds.items()))  # "trace,sbi" and "sbi,trace": one mix, one folder
    reals, make, makers = pseudo_twins(rows, manifest, kinds, controls=controls)
    folder = features_dir / (
        "pseudo-"
        + "+".join(k if r == 1 else f"{k}{r:g}" for k, r in kinds.items())
        + "-controls" * controls
    )
    what = "controls of pseudo-fakes" if controls else "pseudo-fakes"
    log(f"fusion: features of {len(reals)} {what} in {folder}")
    about = {"pseudo": kinds, "makers": makers}  # retrained weights: refused
    table = extract_features(
        reals, manifest, folder, experts, make=make, about=about, log=log, views=views
    )
    return reals, table


def widest_experts(spec: FusionSpec) -> list[Expert]:
    """The spec's experts with their widest options (CLIP: all 12 blocks), as the feature cache
    holds them, so one cache serves fusions of any block subset."""
    return [
        ClipExpert(pool=e.pool, l2=e.l2, norms=e.norms) if isinstance(e, ClipExpert) else e
        for e in spec.build()
    ]


def run_fusion(
    cfg,
    cnn_checkpoint: Path,
    features_dir: Path,
    out: Path,
    spec: FusionSpec | None = None,
    *,
    log=print,
) -> dict[str, Any]:
    """The ``facetrust fuse`` job: the CNN's splits from its training config, features
    (extracted or resumed in ``features_dir``), heads + stack, checkpoint ``out`` and a report
    on the val split beside it (``<out stem>-report/``)."""
    from facetrust.train.features import extract_features
    from facetrust.train.loop import select_rows
    from facetrust.train.report import write_report

    spec = spec or FusionSpec()
    splits = select_rows(cfg)
    manifest = Path(cfg.data.train_manifest)
    every = [r for part in splits.values() for r in part]
    widest = widest_experts(spec)
    table = extract_features(every, manifest, features_dir, widest, log=log, views=spec.views)
    pseudo = None
    if spec.pseudo:  # the twins of the train split's reals, in a folder of their own
        pseudo = twin_features(
            splits["train"], manifest, features_dir, spec.pseudo, widest, log, views=spec.views
        )
    metrics = fit_fusion(
        splits, manifest, cnn_checkpoint, table, out, spec, name=cfg.name, pseudo=pseudo, log=log
    )
    report_dir = out.parent / f"{out.stem}-report"
    for split_name in ("val", "test"):
        if split_name in metrics.get("_probs", {}):
            write_report(
                report_dir / split_name,
                splits[split_name],
                metrics["_probs"][split_name],
                metrics[split_name]["threshold"],
                cfg.name or out.stem,
                extra={"checkpoint": str(out), "auc_per_input": metrics["auc_per_input"]},
            )
    return metrics
