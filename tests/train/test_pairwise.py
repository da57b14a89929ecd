"""The within-source pairwise head: it learns what separates fakes from reals *of one source*,
not what separates the sources."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from facetrust.errors import InputError
from facetrust.train.fusion import fit_linear_head
from facetrust.train.pairwise import fit_pairwise_head, format_partners


def cells(spec, seed):
    """Rows of 6 normal features per ``(source, label, count, shift, cue)``: feature 0 shifted
    by ``shift``, feature ``cue`` by 0.8 on fakes."""
    rng = np.random.default_rng(seed)
    x, y, g = [], [], []
    for name, label, count, shift, cue in spec:
        f = rng.normal(size=(count, 6))
        f[:, 0] += shift
        f[:, cue] += 0.8 * label
        x.append(f)
        y += [label] * count
        g += [name] * count
    return np.concatenate(x), np.array(y), np.array(g)


def rigged(seed=0, n=300):
    """Feature 0 shifts whole sources (the fake-only source far along it, the real-only one
    far against it); feature 1 is the fake cue inside every source; 2-5 are noise."""
    spec = [("a", 1, n, 0.0, 1), ("a", 0, n, 0.0, 1), ("b", 1, n, 1.0, 1), ("b", 0, n, 1.0, 1)]
    return cells([*spec, ("fakes-only", 1, n, 6.0, 1), ("reals-only", 0, n, -6.0, 1)], seed)


def test_pairwise_head_learns_the_within_source_cue_not_the_source():
    x, y, g = rigged()
    pointwise, _ = fit_linear_head(x, y, g, (1.0,))
    pairwise, info = fit_pairwise_head(x, y, g, c=1.0)
    w_point = pointwise.weight / pointwise.scale
    w_pair = pairwise.weight / pairwise.scale
    # the pointwise head leans on the source shift; the pairwise head on the fake cue alone
    assert abs(w_point[0]) > 0.3 * abs(w_point[1])
    assert abs(w_pair[0]) < 0.1 * abs(w_pair[1])
    assert info["groups"] == 2 and info["pairs"] == {"a": 300 * 300, "b": 300 * 300}
    # a new source whose reals sit where the fake-only source was: the cue still ranks them
    xt, yt, gt = rigged(seed=1)
    xt, yt = xt[gt == "a"], yt[gt == "a"]
    xt[yt == 0, 0] += 2.0  # its reals shifted toward the fake-only source
    assert roc_auc_score(yt, pairwise(xt)) > 0.65
    assert roc_auc_score(yt, pointwise(xt)) < 0.5


def test_pairwise_head_probabilities_are_platt_scaled():
    x, y, g = rigged()
    head, _ = fit_pairwise_head(x, y, g, c=1.0)
    p = 1 / (1 + np.exp(-head(x)))
    assert abs(p.mean() - y.mean()) < 0.02  # Platt scaling matches the base rate


def test_pairwise_head_refuses_data_without_a_two_class_source():
    x, y, g = rigged()
    one_class = np.isin(g, ["fakes-only", "reals-only"])
    with pytest.raises(InputError, match="both real and fake"):
        fit_pairwise_head(x[one_class], y[one_class], g[one_class])
    with pytest.raises(InputError, match="C must be"):
        fit_pairwise_head(x, y, g, c=0)
    with pytest.raises(InputError, match="one row each"):
        fit_pairwise_head(x, y[:-1], g)


def one_class_sources(seed=0, n=300):
    """Source "a" has both classes (fake cue on feature 1); "sd" has fakes only, carrying a
    second cue (feature 2) and a format shift (feature 0) that "of"'s reals share and "web"'s
    reals do not."""
    return cells(
        [
            ("a", 1, n, 0.0, 1),
            ("a", 0, n, 0.0, 1),
            ("sd", 1, n, 3.0, 2),
            ("of", 0, n, 3.0, 2),
            ("web", 0, n, -3.0, 2),
        ],
        seed,
    )


def test_fake_only_source_is_ranked_against_its_partners_reals():
    x, y, g = one_class_sources()
    alone, info_alone = fit_pairwise_head(x, y, g, c=1.0)
    matched, info = fit_pairwise_head(x, y, g, c=1.0, partners={"sd": ("of",)})
    mismatched, _ = fit_pairwise_head(x, y, g, c=1.0, partners={"sd": ("web",)})
    w_alone, w_match, w_mis = (h.weight / h.scale for h in (alone, matched, mismatched))
    assert info_alone["pairs"] == {"a": 300 * 300}  # no partner: the fake-only source adds none
    assert info["pairs"] == {"a": 300 * 300, "sd~of": 300 * 300} and info["groups"] == 2
    # paired with reals of its own format, its cue is learnt and the format is not
    assert abs(w_alone[2]) < 0.1 * abs(w_alone[1])
    assert abs(w_match[2]) > 0.5 * abs(w_match[1])
    assert abs(w_match[0]) < 0.1 * abs(w_match[2])
    # paired with reals of another format, the head learns the format shift
    assert abs(w_mis[0]) > abs(w_mis[2])


def test_format_partners_match_codec_quality_then_size():
    rows = [  # source, label, format, quality, width x height
        ("ff", 0, "JPEG", 90, 256 * 256),
        ("of", 0, "JPEG", 90, 250 * 250),
        ("web", 0, "JPEG", 90, 120 * 160),
        ("dfdc", 0, "JPEG", 85, 448 * 448),  # the fakes' size, another quality
        ("png", 0, "PNG", None, 448 * 448),
        ("sd", 1, "JPEG", 90, 448 * 448),
        ("sd", 1, "JPEG", 90, 448 * 448),
        ("tiny", 1, "JPEG", 90, 100 * 130),
        ("lossless", 1, "PNG", None, 64 * 64),
        ("odd", 1, "JPEG", 70, 256 * 256),  # no real of its quality
        ("ff", 1, "JPEG", 90, 256 * 256),  # ff has reals: not fake-only
    ]
    partners = format_partners(*zip(*rows, strict=True))
    assert partners == {
        "sd": ("ff", "of"),  # 256 px and 250 px within 0.25 log2 of each other
        "tiny": ("web",),
        "lossless": ("png",),
    }
    assert format_partners(*zip(*rows, strict=True), tolerance=0.0)["sd"] == ("ff",)
    with pytest.raises(InputError, match="one row each"):
        format_partners(["a"], [1], ["JPEG"], [90, 90], [1.0])
