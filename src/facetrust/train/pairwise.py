"""A linear head fitted only on differences *within* a source: every fake ranked above every
real of its own source, never one source against another.

A pointwise logistic head on pooled sources is rewarded for anything that separates the
labels, including what separates the sources (a fake-only source's resolution, codec or
content); on a source it never saw that part of the head scores the source, not the fake.
The pairwise head's loss is the mean, over sources with both classes, of the logistic loss on
``s(fake) - s(real)`` for all pairs of one source (a smooth within-source AUC, RankNet-style),
so a feature that shifts a whole source moves both sides of every pair alike and earns nothing.
Sources with one class add no pair. The score's offset and scale are then set by Platt scaling
on every training row, so its probabilities can be read (and their ECE measured) like
:func:`facetrust.train.fusion.fit_linear_head`'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facetrust.detect.experts.base import LinearHead
from facetrust.errors import InputError
from facetrust.train.fusion import _standardise, fit_stack

__all__ = ["fit_pairwise_head"]


def fit_pairwise_head(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    c: float = 0.01,
    *,
    max_iter: int = 200,
) -> tuple[LinearHead, dict[str, Any]]:
    """The within-group pairwise logistic head on standardised ``x``; ``groups`` names each
    row's source. ``c`` is the inverse L2 strength on the scale of ``fit_linear_head``'s C (the
    penalty ``|w|^2 / (2 c n)`` beside a mean loss, n the rows). Returns the head and
    ``{"C", "pairs", "groups"}`` (pairs per group with both classes)."""
    import torch

    y = np.asarray(y, np.int64)
    groups = np.asarray(groups)
    if len(y) != len(x) or len(groups) != len(x):
        raise InputError("features, labels and groups must have one row each")
    if c <= 0:
        raise InputError(f"C must be > 0, got {c}")
    z = np.array(x, np.float64)  # standardised in place; the caller's x untouched
    mean, scale = _standardise(z)
    z -= mean
    z /= scale
    sides = []
    for g in np.unique(groups):
        fake = np.flatnonzero((groups == g) & (y == 1))
        real = np.flatnonzero((groups == g) & (y == 0))
        if len(fake) and len(real):
            sides.append((str(g), torch.from_numpy(fake), torch.from_numpy(real)))
    if not sides:
        raise InputError("the pairwise head needs a source with both real and fake faces")
    zt = torch.from_numpy(z)
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    penalty = 1.0 / (2.0 * c * len(z))
    opt = torch.optim.LBFGS(
        [w], max_iter=max_iter, tolerance_grad=1e-7, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        s = zt @ w
        loss = sum(
            torch.nn.functional.softplus(s[real][None, :] - s[fake][:, None]).mean()
            for _, fake, real in sides
        ) / len(sides) + penalty * (w @ w)
        loss.backward()
        return loss

    opt.step(closure)
    weight = w.detach().numpy()
    # offset and scale of the probabilities: Platt scaling on every training row
    (a,), b = fit_stack((z @ weight)[:, None], y)
    pairs = {g: len(f) * len(r) for g, f, r in sides}
    return LinearHead(mean, scale, a * weight, b), {"C": c, "pairs": pairs, "groups": len(sides)}
