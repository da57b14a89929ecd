"""Adapt a shipped head to a team's own labelled faces without its training data.

A team meets a kind of fake the model never saw; it has confirmed examples of it (a few tens)
and its own verified reals, but not the faces the model was trained on. The shipped logit is
kept as an *offset* and a linear correction of the same features is fitted on the team's faces
alone, pulled towards zero by an L2 penalty:

    logit = z_shipped(x) + ((x - mean) / scale) @ delta + b

which is L2 logistic regression with the shipped weights as the prior's centre (for a linear
shipped head, ``w = w0 + delta``). With a few faces the correction stays small and the shipped
head keeps what it knew; with more it moves. The penalty is picked by cross-validation that
keeps each group (a video, a file) on one side, and a zero correction (the intercept alone) is
one of the candidates, so the fit can say the team's faces do not help.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facetrust.detect.calibration import sigmoid
from facetrust.detect.experts import LinearHead, RoutedHead
from facetrust.errors import InputError, ModelError
from facetrust.models.checkpoint import CheckpointMeta, save_checkpoint

__all__ = [
    "ADAPT_C_GRID",
    "Adaptation",
    "Adapter",
    "FileFaces",
    "add_to_head",
    "calibrate_oof",
    "fit_offset",
    "fit_offset_head",
    "row_basis",
]

# 0.0 means no correction: the shipped logit and a fitted intercept alone; the top (1000) is
# near the unpenalised limit, which a kind with a clear trace (a decoder's) picks
ADAPT_C_GRID = (
    0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0,
)  # fmt: skip


# past this many rows *and* features the exact (Newton) solve would need too large a matrix
NEWTON_MAX = 2048


def fit_offset(
    offset: np.ndarray,
    z: np.ndarray,
    y: np.ndarray,
    c: float,
    weight: np.ndarray | None = None,
    basis: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> tuple[np.ndarray, float]:
    """``(delta, b)`` minimising ``sum w * logloss(offset + z @ delta + b) + |delta|^2 / (2 c)``
    on standardised features ``z``; ``c == 0`` fits the intercept alone (``delta`` zero).

    A team has a few hundred faces and the CLIP features are 18,432 wide, so the fit runs in
    the span of the rows: ``delta = z.T @ u`` for some ``u`` (the penalty is zero off that
    span), i.e. a logistic regression on ``q = U sqrt(L)`` from ``z @ z.T = U L U.T``, solved
    exactly by Newton's method in ``min(rows, features)`` unknowns. ``basis`` is
    :func:`row_basis` of ``z``, for many fits of the same rows."""
    offset, y = np.asarray(offset, np.float64), np.asarray(y, np.float64)
    z = np.asarray(z, np.float64)
    w = np.ones(len(y)) if weight is None else np.asarray(weight, np.float64)
    n, d = z.shape
    if c <= 0:
        return np.zeros(d), float(_newton(np.zeros((n, 0)), offset, y, w, c)[1])
    if min(n, d) > NEWTON_MAX:
        return _lbfgs(offset, z, y, w, c)
    q, back = basis if basis is not None else row_basis(z)
    beta, b = _newton(q, offset, y, w, c)
    return (beta if back is None else z.T @ (back @ beta)), b


def row_basis(z: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(q, back)``: ``z``'s rows in an orthonormal basis of their span (``q @ q.T == z @ z.T``,
    ``min(rows, features)`` columns at most) and the map back, ``delta = z.T @ (back @ beta)``;
    ``back`` is None where ``q`` is ``z`` itself (no more features than rows)."""
    z = np.asarray(z, np.float64)
    if z.shape[1] <= z.shape[0]:
        return z, None
    lam, u = np.linalg.eigh(z @ z.T)
    keep = lam > max(lam.max(), 1e-300) * 1e-10
    root = np.sqrt(lam[keep])
    return u[:, keep] * root, u[:, keep] / root


def _newton(
    q: np.ndarray, offset: np.ndarray, y: np.ndarray, w: np.ndarray, c: float, iters: int = 100
) -> tuple[np.ndarray, float]:
    """``(beta, b)`` minimising ``sum w * logloss(offset + q @ beta + b) + |beta|^2 / (2 c)``:
    Newton steps, halved until the loss falls, until the Newton decrement is negligible."""
    n, m = q.shape
    a = np.c_[q, np.ones(n)]
    pen = np.r_[np.full(m, 1.0 / c if m else 0.0), 0.0]

    def loss(theta: np.ndarray) -> float:
        t = offset + a @ theta
        return float(np.sum(w * (np.logaddexp(0.0, t) - y * t)) + 0.5 * pen @ theta**2)

    theta = np.zeros(m + 1)
    f = loss(theta)
    for _ in range(iters):
        p = sigmoid(offset + a @ theta)
        grad = a.T @ (w * (p - y)) + pen * theta
        hess = (a.T * (w * p * (1 - p))) @ a + np.diag(pen + 1e-12)
        step = np.linalg.solve(hess, grad)
        decrement = float(grad @ step)
        if decrement < 1e-12 * max(1.0, f):
            break
        s = 1.0
        while loss(theta - s * step) > f:
            s /= 2
            if s < 1e-8:  # no step lowers the loss: at the minimum to rounding
                return theta[:-1], float(theta[-1])
        theta = theta - s * step
        f = loss(theta)
    return theta[:-1], float(theta[-1])


def _lbfgs(
    offset: np.ndarray, z: np.ndarray, y: np.ndarray, w: np.ndarray, c: float
) -> tuple[np.ndarray, float]:
    """:func:`fit_offset` by L-BFGS on ``delta`` itself, for more rows and features than the
    exact solve takes."""
    from scipy.optimize import minimize

    d = z.shape[1]

    def loss(theta):
        delta, b = theta[:-1], theta[-1]
        t = offset + b + z @ delta
        g = w * (sigmoid(t) - y)
        f = float(np.sum(w * (np.logaddexp(0.0, t) - y * t)) + delta @ delta / (2 * c))
        return f, np.concatenate([z.T @ g + delta / c, [g.sum()]])

    res = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return res.x[:-1], float(res.x[-1])


def fit_offset_head(
    offset: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    mean: np.ndarray,
    scale: np.ndarray,
    c_grid: tuple[float, ...] = ADAPT_C_GRID,
    folds: int = 5,
) -> tuple[LinearHead, dict[str, Any]]:
    """The correction head (``LinearHead``: add its logit to the shipped one) for features ``x``
    whose shipped logits are ``offset``, standardised by the shipped ``mean`` / ``scale``.

    The classes are weighted equally. ``c`` is chosen by grouped cross-validation (pooled AUC
    of the out-of-fold logits; ties go to the smaller correction); returns the head refitted on
    every row and ``{"C", "cv_auc", "oof"}``, ``oof`` the out-of-fold logits of the chosen
    ``c`` (for a threshold the head did not train on). InputError without both classes or
    with fewer than two groups of each.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    from facetrust.train.fusion import cell_weights
    from facetrust.train.metrics import roc_auc

    y = np.asarray(y, np.int64)
    offset = np.asarray(offset, np.float64)
    groups = np.asarray(groups)
    n_groups = [len(set(groups[y == c])) for c in (0, 1)]
    if min(n_groups) < 2:
        raise InputError(
            "adapting needs real and fake faces from at least two files each "
            f"(got {n_groups[0]} real, {n_groups[1]} fake)"
        )
    z = (np.asarray(x, np.float64) - mean) / scale
    w = cell_weights(np.zeros(len(y)), y)  # the two classes weigh alike, mean 1
    k = min(folds, *n_groups)
    splits = list(
        StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=0).split(z, y, groups)
    )
    oof = {c: offset.copy() for c in c_grid}  # a fold without both classes keeps the offset
    for tr, te in splits:
        if len(np.unique(y[tr])) < 2:
            continue
        z_tr = z[tr]  # one copy of the fold's rows for every strength
        basis = row_basis(z_tr) if min(z_tr.shape) <= NEWTON_MAX else None
        for c in c_grid:
            delta, b = fit_offset(offset[tr], z_tr, y[tr], c, w[tr], basis)
            oof[c][te] = offset[te] + z[te] @ delta + b
    cv_auc = {c: roc_auc(y, sigmoid(oof[c])) for c in c_grid}
    best = max(cv_auc.values())
    c = min(c for c in c_grid if cv_auc[c] >= best - 1e-9)
    delta, b = fit_offset(offset, z, y, c, w)
    head = LinearHead(np.asarray(mean, np.float64), np.asarray(scale, np.float64), delta, b)
    info = {"C": c, "cv_auc": {str(k): round(v, 4) for k, v in cv_auc.items()}, "oof": oof[c]}
    return head, info


def calibrate_oof(oof: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The adapted model's calibration: Platt scaling of the correction's out-of-fold logits,
    the classes weighed alike (probabilities as if fakes and reals were equally common, as the
    shipped model's calibration set nearly is), so a handful of fakes beside hundreds of reals
    do not squash every probability towards 0. Its threshold is then set on the same
    out-of-fold probabilities."""
    from facetrust.detect.calibration import fit_platt

    return fit_platt(oof, y, min_per_class=2, balanced=True)


def add_to_head(head: LinearHead | RoutedHead, corr: LinearHead, factor: float = 1.0):
    """A head of ``head``'s kind whose logit is ``head(x) + factor * corr(x)`` exactly (both are
    linear in ``x``; for a routed head the correction goes into both of its mixed heads, whose
    mixing weights sum to one, and not into the router)."""
    if isinstance(head, RoutedHead):
        return RoutedHead(
            add_to_head(head.clean, corr, factor), add_to_head(head.both, corr, factor), head.router
        )
    if head.width != corr.width:
        raise ModelError(f"the correction reads {corr.width} features, the head {head.width}")
    a = factor * corr.weight / corr.scale  # the correction's coefficient per raw feature
    weight = head.weight + a * head.scale
    bias = head.bias + factor * corr.bias + float(a @ (head.mean - corr.mean))
    return LinearHead(head.mean.copy(), head.scale.copy(), weight, bias)


def _limits(base: str | None, s: dict[str, Any]) -> str:
    """The adapted model's one line on its limits (at most 400 characters, as a checkpoint
    keeps it): what it was adapted on, then the base model's line."""
    line = (
        f"adapted to {s['fake_files']} fake and {s['real_files']} real files of its user "
        f"(cross-validated AUC on them {s['auc_before']:.2f} -> {s['auc_after_cv']:.2f}); "
        f"{base or 'base model not validated on other kinds of fake'}"
    )
    return line if len(line) <= 400 else line[:397] + "..."


def largest_face(faces: list) -> Any | None:
    """The face with the largest box of one image or frame (None: no face)."""
    return max(faces, key=lambda f: f.width * f.height, default=None)


@dataclass
class FileFaces:
    """What adapting keeps of one file's faces: the model's fused logit per face (before its
    calibration) and the CLIP features the correction reads (``(n, D)``)."""

    offset: np.ndarray
    features: np.ndarray

    def __len__(self) -> int:
        return len(self.offset)


@dataclass
class Adaptation:
    """A fitted adaptation: the new checkpoint's metadata (``meta``, the same network) and
    what was measured (``summary``); :meth:`save` writes it."""

    model: Any
    meta: CheckpointMeta
    summary: dict[str, Any]

    def save(self, path: str | Path) -> Path:
        return save_checkpoint(path, self.model, self.meta)


class Adapter:
    """Adapt a fused model's CLIP expert to your own labelled images (see the module's doc).

    ``read(path)`` scores a file's faces as detection cuts them (the largest face of an image,
    or of each sampled video frame) into :class:`FileFaces`, so only numbers are kept, not
    crops; ``fit(reals, fakes)`` takes them per file (``{name: FileFaces}``) and returns an
    :class:`Adaptation` whose threshold calls ``fpr`` of your reals fake, judged on
    out-of-fold scores.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str | None = None,
        frames: int | None = None,
    ) -> None:
        from facetrust.detect import Detector

        self.detector = Detector(model, device=device, frames=frames, runtime="torch")
        experts = self.detector.experts
        if experts is None or "clip" not in experts.experts:
            raise ModelError(
                f"{self.detector.model_name} has no CLIP expert to adapt (facetrust-default has)"
            )
        self.clip_weight = float(experts.weight[experts.inputs.index("clip")])
        if self.clip_weight <= 0:
            raise ModelError(f"{self.detector.model_name}'s fusion does not weigh its CLIP expert")

    def faces(self, path: str | Path) -> list[np.ndarray]:
        """The crops adapting reads from one file: its largest face per image or frame."""
        found = (largest_face(fs) for fs in self.detector.find(path))
        return [f.crop for f in found if f is not None]

    def read(self, path: str | Path) -> FileFaces:
        """A file's :class:`FileFaces` (empty when it has no face)."""
        return self.score(self.faces(path))

    def score(self, crops: list[np.ndarray]) -> FileFaces:
        """The fused logits (the model's score before its calibration) and the CLIP features
        of crops, one pass of each network."""
        scorer, experts = self.detector.scorer, self.detector.experts
        clip = experts.experts["clip"]
        if not crops:
            return FileFaces(np.zeros(0), np.zeros((0, clip.head.width), np.float32))
        feats = clip.features(crops)
        cnn = scorer.cnn_logits(crops)
        cols = [
            cnn if n == "cnn" else clip.head(feats) if n == "clip" else experts.experts[n](crops)
            for n in experts.inputs
        ]
        return FileFaces(experts.combine(np.stack(cols, axis=1)), feats)

    def fit(
        self,
        reals: dict[str, FileFaces],
        fakes: dict[str, FileFaces],
        fpr: float = 0.05,
    ) -> Adaptation:
        """The adapted checkpoint from each file's :class:`FileFaces` (``read``'s output)."""
        from facetrust.detect.calibration import apply_calibration, threshold_for_reals
        from facetrust.models.checkpoint import Calibration
        from facetrust.train.metrics import roc_auc

        reals = {n: f for n, f in reals.items() if len(f)}
        fakes = {n: f for n, f in fakes.items() if len(f)}
        if min(len(reals), len(fakes)) < 2:
            raise InputError(
                "adapting needs faces from at least two real and two fake files "
                f"(got {len(reals)} real, {len(fakes)} fake)"
            )
        parts = [(label, name, f) for label, d in ((0, reals), (1, fakes)) for name, f in d.items()]
        offset = np.concatenate([f.offset for _, _, f in parts])
        feats = np.concatenate([f.features for _, _, f in parts])
        y_arr = np.concatenate([np.full(len(f), label, np.int64) for label, _, f in parts])
        g_arr = np.concatenate([[f"{label}:{name}"] * len(f) for label, name, f in parts])
        clip = self.detector.experts.experts["clip"]
        base = clip.head.clean if isinstance(clip.head, RoutedHead) else clip.head
        corr, info = fit_offset_head(offset, feats, y_arr, g_arr, base.mean, base.scale)
        cal = calibrate_oof(info["oof"], y_arr)
        oof = apply_calibration(info["oof"], cal)
        t = threshold_for_reals(oof[y_arr == 0], fpr)
        meta = self.detector.meta
        spec = dict(meta.experts)
        spec["clip"] = {
            **spec["clip"],
            "head": add_to_head(clip.head, corr, 1 / self.clip_weight).to_dict(),
        }
        summary = {
            "real_faces": int((y_arr == 0).sum()),
            "fake_faces": int((y_arr == 1).sum()),
            "real_files": len(reals),
            "fake_files": len(fakes),
            "auc_before": round(roc_auc(y_arr, sigmoid(offset)), 4),
            "auc_after_cv": round(roc_auc(y_arr, oof), 4),
            "calibration": {"a": round(cal["a"], 4), "b": round(cal["b"], 4)},
            "C": info["C"],
            "cv_auc": info["cv_auc"],
            "fpr": fpr,
            "threshold": t["threshold"],
            "reals_called_fake_cv": round(t["called_fake"], 4),
            "expected_reals_called_fake": [round(v, 4) for v in t["expected"]],
            "fakes_caught_cv": round(float((oof[y_arr == 1] >= t["threshold"]).mean()), 4),
            "base_model": self.detector.model_name,
            "base_sha256": self.detector.model_sha256,
        }
        rule = (
            f"adapted: smallest threshold calling <= {fpr:g} of {summary['real_faces']} real "
            f"faces fake on out-of-fold scores: {t['threshold']:.4f} (fakes caught "
            f"{summary['fakes_caught_cv']:.3f} of {summary['fake_faces']})"
        )
        new = meta.model_copy(
            update={
                "experts": spec,
                "calibration": Calibration.model_validate(cal),
                "threshold": float(t["threshold"]),
                "threshold_rule": rule,
                "training_data": {
                    **meta.training_data,
                    "adapted": {"real": summary["real_faces"], "fake": summary["fake_faces"]},
                },
                "metrics": {**meta.metrics, "adapted": summary},
                "name": f"{self.detector.model_name}-adapted",
                "limits": _limits(self.detector.limits, summary),
            }
        )
        return Adaptation(self.detector.model, new, summary)  # the network, unchanged
