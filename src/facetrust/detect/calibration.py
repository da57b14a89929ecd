"""Turn model logits into calibrated probabilities, as the checkpoint's ``calibration`` says.

Calibrations (:class:`~facetrust.models.checkpoint.Calibration`, or their dict form):
  ``{"method": "none"}``                       p = sigmoid(logit)
  ``{"method": "temperature", "temperature": T}`` p = sigmoid(logit / T)
  ``{"method": "platt", "a": a, "b": b}``       p = sigmoid(a * logit + b)
  ``{"method": "isotonic", "x": [...], "y": [...]}``  p = interp(sigmoid(logit), x, y)

Fitted dicts also carry ``n``, ``nll_before``, ``nll_after`` and ``prob_std`` (ignored when
applying). ``choose_threshold`` picks the decision threshold on the calibrated probabilities;
``threshold_for_reals`` picks one from known-real images alone (a team's own uploads), with the
false-positive rate it can promise on more images like them.

Small data: a fit (temperature, Platt, isotonic) refuses fewer than ``MIN_PER_CLASS`` (20)
real or fake examples with a one-line ``InputError`` (lower it with ``min_per_class`` only
knowingly), and warns (``CalibrationWarning``) when the calibrated probabilities collapse: their
standard deviation on the calibration set below ``COLLAPSE_STD`` (0.02), i.e. every verdict near
one value (typically a huge temperature squashing everything to ~0.5).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError

from facetrust.errors import InputError, ModelError
from facetrust.models.checkpoint import Calibration

METHODS = ("none", "temperature", "platt", "isotonic")


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(x, dtype=np.float64), -60, 60)
    return 1.0 / (1.0 + np.exp(-x))


def as_calibration(cal: Calibration | dict[str, Any]) -> Calibration:
    """A :class:`~facetrust.models.checkpoint.Calibration` from itself or its dict form;
    ``ModelError`` (one line) when it is not usable."""
    if isinstance(cal, Calibration):
        return cal
    try:
        return Calibration.model_validate(cal)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ModelError(
            f"unusable calibration: {where + ': ' if where else ''}{err['msg']}"
        ) from None


def validate_calibration(cal: Calibration | dict[str, Any]) -> None:
    """Raise ``ModelError`` if ``cal`` is not a usable calibration."""
    as_calibration(cal)


def apply_calibration(logits: np.ndarray, cal: Calibration | dict[str, Any]) -> np.ndarray:
    """Calibrated fake probabilities for raw fake logits (any shape)."""
    c = as_calibration(cal)
    logits = np.asarray(logits, dtype=np.float64)
    if c.method == "temperature":
        return sigmoid(logits / float(c.temperature))
    if c.method == "platt":
        return sigmoid(float(c.a) * logits + float(c.b))
    if c.method == "isotonic":
        return np.interp(sigmoid(logits), np.asarray(c.x, float), np.asarray(c.y, float))
    return sigmoid(logits)


# --------------------------------------------------------------------------------------------
# Fitting: held-out (logit, label) pairs in, a calibration dict for the checkpoint out.
# Labels are 1 = fake, 0 = real. Every fit also reports the NLL before and after on its data.

FitMethod = Literal["none", "temperature", "platt", "isotonic"]

_LOG_T_BOUNDS = (np.log(1e-2), np.log(1e2))
MAX_ISOTONIC_KNOTS = 200

#: fewest real and fewest fake examples a fitted calibration accepts (per class)
MIN_PER_CLASS = 20
#: calibrated probabilities with a smaller standard deviation on their own calibration set
#: have collapsed (every verdict near one value): a warning
COLLAPSE_STD = 0.02


class CalibrationWarning(UserWarning):
    """The fitted calibration squashes the calibration set's probabilities to about one value."""


def check_calibration_counts(
    labels: Any, method: str = "temperature", min_per_class: int = MIN_PER_CLASS
) -> None:
    """``InputError`` (one line, naming the counts and the minimum) when ``labels`` (0/1 or
    'real'/'fake') hold fewer than ``min_per_class`` reals or fakes for a fitted ``method``
    ("none" fits nothing and needs no minimum)."""
    if method == "none" or min_per_class <= 0:
        return
    y = _as_1d("labels", labels)
    n_fake = int(np.sum(y == 1))
    n_real = int(y.size - n_fake)
    if min(n_real, n_fake) < min_per_class:
        raise InputError(
            f"{method} calibration needs at least {min_per_class} real and {min_per_class} fake "
            f"examples, got {n_real} real / {n_fake} fake: use a larger calib split, or "
            "calibration.method=none (or a lower calibration.min_per_class, knowingly)"
        )


def _warn_if_collapsed(cal: dict[str, Any], z: np.ndarray) -> dict[str, Any]:
    """Record the calibrated probabilities' spread on the fit's own data; warn when tiny."""
    p = apply_calibration(z, cal)
    cal["prob_std"] = float(p.std())
    if cal["prob_std"] < COLLAPSE_STD:
        extra = f", temperature {cal['temperature']:.3g}" if "temperature" in cal else ""
        warnings.warn(
            f"{cal['method']} calibration collapsed the probabilities: std {cal['prob_std']:.4f} "
            f"on {z.size} calibration rows (all in {p.min():.3f}-{p.max():.3f}{extra}); "
            "the verdicts will not separate real from fake",
            CalibrationWarning,
            stacklevel=3,
        )
    return cal


def _as_1d(name: str, a: Any) -> np.ndarray:
    arr = np.asarray(a)
    if name == "labels" and arr.dtype.kind in "OUS":  # "real" / "fake" strings
        if not np.all((arr == "fake") | (arr == "real")):
            raise InputError("labels must be 0 / 1 or 'real' / 'fake'")
        arr = (arr == "fake").astype(np.float64)
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numbers") from None
    if arr.ndim != 1:
        raise InputError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contain NaN or infinite values")
    return arr


def _check_pairs(
    scores: Any, labels: Any, *, what: str = "logits", both_classes: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 scores and 0/1 int labels of the same length."""
    x = _as_1d(what, scores)
    y = _as_1d("labels", labels)
    if x.shape != y.shape:
        raise InputError(f"{what} and labels differ in length ({x.size} vs {y.size})")
    if x.size == 0:
        raise InputError(f"no {what} given")
    if not np.all((y == 0) | (y == 1)):
        raise InputError("labels must be 0 (real) or 1 (fake)")
    if both_classes and (y.min() == y.max()):
        raise InputError(f"need both real and fake examples, got only {'fake' if y[0] else 'real'}")
    return x, y.astype(np.int64)


def _nll(p: np.ndarray, y: np.ndarray, eps: float = 1e-12) -> float:
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def _nll_logits(z: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy of logits ``z`` (numerically stable)."""
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, *, min_per_class: int = MIN_PER_CLASS
) -> dict[str, Any]:
    """Temperature T > 0 minimising the NLL of ``sigmoid(logits / T)``.

    The search runs on log T in [log 0.01, log 100] (bounded Brent); the NLL is convex in 1/T.
    """
    from scipy.optimize import minimize_scalar

    z, y = _check_pairs(logits, labels)
    check_calibration_counts(y, "temperature", min_per_class)
    res = minimize_scalar(
        lambda lt: _nll_logits(z / np.exp(lt), y),
        bounds=_LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-6},
    )
    t = float(np.exp(res.x))
    cal = {
        "method": "temperature",
        "temperature": t,
        "n": int(z.size),
        "nll_before": _nll_logits(z, y),
        "nll_after": _nll_logits(z / t, y),
    }
    return _warn_if_collapsed(cal, z)


def fit_platt(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    min_per_class: int = MIN_PER_CLASS,
    balanced: bool = False,
) -> dict[str, Any]:
    """Platt scaling ``sigmoid(a * logit + b)`` fitted by L-BFGS.

    Uses Platt's smoothed targets ((N+ + 1) / (N+ + 2) for fakes, 1 / (N- + 2) for reals), which
    keeps ``a`` finite when the calibration set is perfectly separated. ``balanced`` weighs the
    classes alike, so the probabilities are those of a set with as many fakes as reals however
    few fakes the fit had (``facetrust adapt``'s ten confirmed fakes beside 250 reals).
    """
    from scipy.optimize import minimize

    z, y = _check_pairs(logits, labels)
    check_calibration_counts(y, "platt", min_per_class)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    t = np.where(y == 1, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    w = np.ones(y.size)
    if balanced and n_pos and n_neg:
        w = np.where(y == 1, y.size / (2.0 * n_pos), y.size / (2.0 * n_neg))

    def loss_grad(ab: np.ndarray) -> tuple[float, np.ndarray]:
        s = ab[0] * z + ab[1]
        loss = np.mean(w * (np.logaddexp(0.0, s) - t * s))
        r = w * (sigmoid(s) - t)
        return float(loss), np.array([np.mean(r * z), np.mean(r)])

    res = minimize(loss_grad, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    a, b = (float(v) for v in res.x)
    cal = {
        "method": "platt",
        "a": a,
        "b": b,
        "n": int(z.size),
        "nll_before": _nll_logits(z, y),
        "nll_after": _nll_logits(a * z + b, y),
    }
    return _warn_if_collapsed(cal, z)


def fit_isotonic(
    logits: np.ndarray,
    labels: np.ndarray,
    min_points: int = 50,
    max_knots: int = MAX_ISOTONIC_KNOTS,
    *,
    min_per_class: int = MIN_PER_CLASS,
) -> dict[str, Any]:
    """Isotonic regression of the label on ``sigmoid(logit)``, stored as interpolation knots.

    Outputs are kept inside [1 / (n + 2), 1 - 1 / (n + 2)] so no verdict is ever certain (and
    the NLL stays finite); inputs outside the fitted range are clipped, as ``np.interp`` does.
    At most ``max_knots`` increasing, deduplicated knots are kept (beyond that, the fitted map
    is re-sampled at quantiles of the scores).
    """
    from sklearn.isotonic import IsotonicRegression

    z, y = _check_pairs(logits, labels)
    check_calibration_counts(y, "isotonic", min_per_class)
    if z.size < min_points:
        raise InputError(f"isotonic calibration needs at least {min_points} points, got {z.size}")
    p = sigmoid(z)
    eps = 1.0 / (z.size + 2.0)
    iso = IsotonicRegression(y_min=eps, y_max=1.0 - eps, increasing=True, out_of_bounds="clip")
    iso.fit(p, y)
    kx = np.asarray(iso.X_thresholds_, np.float64)
    ky = np.asarray(iso.y_thresholds_, np.float64)
    kx, first = np.unique(kx, return_index=True)  # sklearn already dedups; be sure
    ky = ky[first]
    if kx.size < 2:  # a single distinct score: a flat map
        kx, ky = np.array([0.0, 1.0]), np.full(2, ky[0] if ky.size else float(y.mean()))
    if kx.size > max_knots:  # re-sample the fitted map where the data lie
        kx = np.unique(np.quantile(p, np.linspace(0.0, 1.0, max_knots)))
        ky = iso.predict(kx)
    cal = {"method": "isotonic", "x": kx.tolist(), "y": ky.tolist(), "n": int(z.size)}
    cal["nll_before"] = _nll(p, y)
    cal["nll_after"] = _nll(apply_calibration(z, cal), y)
    return _warn_if_collapsed(cal, z)


def fit_calibration(
    logits: np.ndarray,
    labels: np.ndarray,
    method: FitMethod,
    *,
    min_per_class: int = MIN_PER_CLASS,
) -> dict[str, Any]:
    """Fit the named calibration; the result is what a checkpoint's ``calibration`` stores.
    Fitted methods refuse fewer than ``min_per_class`` examples of either class."""
    if method == "temperature":
        return fit_temperature(logits, labels, min_per_class=min_per_class)
    if method == "platt":
        return fit_platt(logits, labels, min_per_class=min_per_class)
    if method == "isotonic":
        return fit_isotonic(logits, labels, min_per_class=min_per_class)
    if method == "none":
        z, y = _check_pairs(logits, labels, both_classes=False)
        nll = _nll_logits(z, y)
        return {"method": "none", "n": int(z.size), "nll_before": nll, "nll_after": nll}
    raise InputError(f"unknown calibration method {method!r}; expected one of {METHODS}")


# --------------------------------------------------------------------------------------------
# Decision threshold on calibrated probabilities ("fake" when prob >= threshold).


def _rates(probs: np.ndarray, y: np.ndarray, thr: np.ndarray) -> tuple[np.ndarray, ...]:
    """(tp, fp, n_fake, n_real) for each threshold in ``thr``, predicting fake when p >= t."""
    fake, real = np.sort(probs[y == 1]), np.sort(probs[y == 0])
    tp = fake.size - np.searchsorted(fake, thr, side="left")
    fp = real.size - np.searchsorted(real, thr, side="left")
    return tp, fp, fake.size, real.size


def _candidates(p: np.ndarray) -> np.ndarray:
    """Threshold candidates: every observed probability, ascending, and one just above the
    largest (nothing flagged)."""
    return np.append(np.unique(p), np.nextafter(p.max(), np.inf))


def _fpr_threshold(reals: np.ndarray, cand: np.ndarray, target: float) -> float:
    """The smallest of the ascending ``cand`` whose share of ``reals`` at or above it is
    ``<= target`` (the last candidate, above every probability, always qualifies)."""
    fp = reals.size - np.searchsorted(np.sort(reals), cand, side="left")
    return float(cand[int(np.argmax(fp / reals.size <= target))])  # fp falls as cand rises


def choose_threshold(
    probs: np.ndarray, labels: np.ndarray, rule: str = "fpr:0.05"
) -> tuple[float, str]:
    """A decision threshold on calibrated probabilities, and a line that says how it was chosen.

    Rules (candidates are the observed probabilities; "fake" means ``prob >= threshold``):
      ``fpr:X``    the smallest threshold whose false-positive rate on reals is <= X
      ``youden``   the threshold maximising TPR - FPR
      ``f1``       the threshold maximising F1 of the fake class
      ``fixed:X``  X itself
    """
    name, _, arg = rule.strip().partition(":")
    fixed = name == "fixed"
    p, y = _check_pairs(probs, labels, what="probabilities", both_classes=not fixed)
    if np.any((p < 0) | (p > 1)):
        raise InputError("probabilities must lie in [0, 1]")

    def num(lo: float, hi: float) -> float:
        try:
            v = float(arg)
        except ValueError:
            raise InputError(f"threshold rule {rule!r} needs a number after ':'") from None
        if not lo <= v <= hi:
            raise InputError(f"threshold rule {rule!r}: the number must lie in [{lo}, {hi}]")
        return v

    cand = _candidates(p)
    if name == "fpr":
        target = num(0.0, 1.0)
        thr, how = (
            _fpr_threshold(p[y == 0], cand, target),
            f"smallest threshold with FPR <= {target:g}",
        )
    elif name == "youden":
        tp, fp, n_fake, n_real = _rates(p, y, cand)
        i = int(np.argmax(tp / n_fake - fp / n_real))
        thr, how = cand[i], "max Youden's J (TPR - FPR)"
    elif name == "f1":
        tp, fp, n_fake, n_real = _rates(p, y, cand)
        f1 = 2 * tp / np.maximum(2 * tp + fp + (n_fake - tp), 1)
        i = int(np.argmax(f1))
        thr, how = cand[i], f"max F1 ({f1[i]:.3f})"
    elif fixed:
        thr, how = num(0.0, 1.0), "fixed"
    else:
        raise InputError(f"unknown threshold rule {rule!r}: use fpr:X, youden, f1 or fixed:X")

    thr = min(float(thr), 1.0)  # checkpoints keep thresholds in [0, 1]
    tp, fp, n_fake, n_real = _rates(p, y, np.array([thr]))
    fpr = f"FPR {fp[0] / n_real:.3f}" if n_real else "FPR n/a"
    tpr = f"TPR {tp[0] / n_fake:.3f}" if n_fake else "TPR n/a"
    text = f"{how}: threshold {thr:.4f} ({fpr}, {tpr} on {n_real} real / {n_fake} fake)"
    return thr, text


#: fewest known-real files below which ``threshold_for_reals`` warns that its rate is loose
FEW_REALS = 100


def threshold_for_reals(probs: Any, fpr: float = 0.05, level: float = 0.95) -> dict[str, Any]:
    """The threshold that calls at most ``fpr`` of known-real images fake, from their
    calibrated probabilities ``probs`` alone (no fake needed), and what it promises.

    The threshold is the smallest observed probability (or one just above the largest) whose
    share of ``probs`` at or above it is ``<= fpr``, the rule of ``choose_threshold("fpr:X")``.
    On new images drawn like these, the share called fake is not exactly that: with ``k`` of
    ``n`` at or above the threshold, it follows Beta(k, n - k + 1) (the coverage of an order
    statistic; Beta(1, n) above the largest), so ``expected`` is its central ``level``
    interval. Returns ``threshold``, ``n``, ``called_fake`` (the share of ``probs`` at or above
    it), ``expected`` ``(low, high)`` and ``few`` (fewer than :data:`FEW_REALS`: the
    interval is wide; say so)."""
    from scipy.stats import beta

    p = _as_1d("probabilities", probs)
    if p.size == 0:
        raise InputError("no probabilities of real images to set a threshold from")
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise InputError("probabilities must be finite and lie in [0, 1]")
    if not 0.0 < fpr < 1.0:
        raise InputError(f"the false-positive rate must lie in (0, 1), got {fpr:g}")
    if not 0.0 < level < 1.0:
        raise InputError(f"the interval's level must lie in (0, 1), got {level:g}")
    n = p.size
    thr = _fpr_threshold(p, _candidates(p), fpr)
    k = int((p >= thr).sum())
    a = max(k, 1)  # above the largest: the top order statistic's coverage
    tail = (1.0 - level) / 2
    low, high = (float(v) for v in beta.ppf([tail, 1.0 - tail], a, n - a + 1))
    return {
        "threshold": min(thr, 1.0),
        "n": n,
        "called_fake": k / n,
        "expected": (low, high),
        "fpr": fpr,
        "level": level,
        "few": n < FEW_REALS,
    }
