"""A linear head fitted only on differences *within* a source: every fake ranked above every
real of its own source, never one source against another.

A pointwise logistic head on pooled sources is rewarded for anything that separates the
labels, including what separates the sources (a fake-only source's resolution, codec or
content); on a source it never saw that part of the head scores the source, not the fake.
The pairwise head's loss is the mean, over sources with both classes, of the logistic loss on
``s(fake) - s(real)`` for all pairs of one source (a smooth within-source AUC, RankNet-style),
so a feature that shifts a whole source moves both sides of every pair alike and earns nothing.
Sources with one class add no pair, unless ``partners`` names, for a fake-only source, the
sources whose reals its fakes are ranked against instead (:func:`format_partners`: the reals
that share the fakes' codec, quality and size, so that a format cannot tell the two sides of
a pair apart). The score's offset and scale are then set by Platt scaling
on every training row, so its probabilities can be read (and their ECE measured) like
:func:`facetrust.train.fusion.fit_linear_head`'s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from facetrust.detect.experts.base import LinearHead
from facetrust.errors import InputError
from facetrust.train.fusion import _standardised, fit_stack

__all__ = ["fit_pairwise_head", "format_partners"]


def fit_pairwise_head(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    c: float = 0.01,
    *,
    max_iter: int = 200,
    partners: Mapping[str, Sequence[str]] | None = None,
) -> tuple[LinearHead, dict[str, Any]]:
    """The within-group pairwise logistic head on standardised ``x``; ``groups`` names each
    row's source. ``c`` is the inverse L2 strength on the scale of ``fit_linear_head``'s C (the
    penalty ``|w|^2 / (2 c n)`` beside a mean loss, n the rows). A group with fakes and no
    reals is paired with the reals of its ``partners`` present in the rows (none: no pair).
    Returns the head and ``{"C", "pairs", "groups"}`` (pairs per paired group; a fake-only
    group's entry is named ``"fakes~partner+partner"``)."""
    import torch

    y = np.asarray(y, np.int64)
    groups = np.asarray(groups)
    if len(y) != len(x) or len(groups) != len(x):
        raise InputError("features, labels and groups must have one row each")
    if c <= 0:
        raise InputError(f"C must be > 0, got {c}")
    z, mean, scale = _standardised(x)
    sides = []
    for g in np.unique(groups):
        fake = np.flatnonzero((groups == g) & (y == 1))
        real = np.flatnonzero((groups == g) & (y == 0))
        name = str(g)
        if len(fake) and not len(real) and partners and partners.get(name):
            real = np.flatnonzero(np.isin(groups, list(partners[name])) & (y == 0))
            present = sorted(set(groups[real].tolist()))
            name = f"{name}~{'+'.join(map(str, present))}"
        if len(fake) and len(real):
            sides.append((name, torch.from_numpy(fake), torch.from_numpy(real)))
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


def format_partners(
    sources: Sequence[str],
    labels: Sequence[int],
    formats: Sequence[str],
    qualities: Sequence[int | None],
    areas: Sequence[float],
    *,
    tolerance: float = 0.25,
) -> dict[str, tuple[str, ...]]:
    """For each source with no real image, the sources with reals whose images match its
    fakes' format best: the same container and JPEG quality (each source's most common), then
    the nearest median size in log2 pixels (every source within ``tolerance`` of the nearest).
    One row per image: its source, label (1 fake), format, quality (None when not JPEG) and
    area (width x height). A fake-only source with no real of its format and quality gets no
    partner."""
    n = len(sources)
    if not (len(labels) == len(formats) == len(qualities) == len(areas) == n):
        raise InputError("sources, labels, formats, qualities and areas must have one row each")
    src = np.array([str(s) for s in sources], dtype=object)  # set() of it: plain str
    lab = np.asarray(labels)
    size = np.log2(np.maximum(np.asarray(areas, np.float64), 1.0))
    codec = [f"{f}/{q}" for f, q in zip(formats, qualities, strict=True)]

    def profile(rows: np.ndarray) -> tuple[str, float]:
        return Counter(codec[i] for i in rows).most_common(1)[0][0], float(np.median(size[rows]))

    reals = {s: profile(np.flatnonzero((src == s) & (lab == 0))) for s in set(src[lab == 0])}
    out: dict[str, tuple[str, ...]] = {}
    for s in sorted(set(src) - set(reals)):
        kind, area = profile(np.flatnonzero(src == s))
        gaps = {r: abs(a - area) for r, (k, a) in reals.items() if k == kind}
        if gaps:
            best = min(gaps.values())
            out[s] = tuple(sorted(r for r, gap in gaps.items() if gap <= best + tolerance))
    return out
