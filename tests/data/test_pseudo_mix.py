"""The pseudo-fake registry, the ``sbi`` wrapper and ``PseudoFakeMix`` (ratios, switches)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from facetrust.data.pseudo import (
    PSEUDO_FAKES,
    PseudoFakeMix,
    SpliceConfig,
    create_pseudo_fake,
)
from facetrust.data.sbi import SBIConfig, self_blend
from facetrust.errors import InputError


@pytest.fixture(scope="module")
def faces(astronaut, face_detector):
    """Aligned 256-px crops and (468, 2) landmarks of the astronaut and of her mirror image."""
    from facetrust.faces import FaceAligner
    from facetrust.faces.align import transform_points

    aligner = FaceAligner(size=256, margin=0.2)
    out = []
    for img in (astronaut, np.ascontiguousarray(astronaut[:, ::-1])):
        face = face_detector(img)[0]
        pts = transform_points(face.landmarks[:, :2], aligner.matrix(face))
        out.append((aligner(img, face), pts))
    return out


def test_registry():
    assert set(PSEUDO_FAKES) == {"sbi", "splice", "trace", "resynth"}
    assert PSEUDO_FAKES["splice"].needs_donor and PSEUDO_FAKES["splice"].needs_landmarks
    assert not PSEUDO_FAKES["trace"].needs_landmarks and not PSEUDO_FAKES["sbi"].needs_donor
    assert not PSEUDO_FAKES["resynth"].needs_landmarks and not PSEUDO_FAKES["resynth"].needs_donor
    with pytest.raises(InputError, match="resynth, sbi, splice, trace"):
        create_pseudo_fake("deepfake")
    with pytest.raises(InputError, match="unknown settings"):
        create_pseudo_fake("trace", colour=1)
    with pytest.raises(InputError, match="SpliceConfig"):
        create_pseudo_fake("sbi", SpliceConfig())
    assert create_pseudo_fake("sbi", hull="ellipse").cfg.hull == "ellipse"


def test_sbi_kind_is_self_blend(faces):
    crop, pts = faces[0]
    made = create_pseudo_fake("sbi")(crop, pts, 4)
    fake, mask = self_blend(crop, pts, np.random.default_rng(4), SBIConfig())
    assert np.array_equal(made.image, fake) and np.array_equal(made.mask, mask)
    assert made.kind == "sbi" and made.label == "fake" and made.y == 1
    outside = made.mask == 0
    assert outside.mean() > 0.2 and np.array_equal(made.image[outside], crop[outside])
    assert np.any(made.image[made.mask > 0.5] != crop[made.mask > 0.5])
    # without landmarks it falls back to the ellipse, as self_blend does
    assert create_pseudo_fake("sbi")(crop, None, 4).image.shape == crop.shape


def test_ratios_are_respected():
    mix = PseudoFakeMix({"sbi": 3, "splice": 2, "trace": 1})
    assert mix.ratios == pytest.approx({"sbi": 0.5, "splice": 1 / 3, "trace": 1 / 6})
    rng = np.random.default_rng(0)
    counts = Counter(mix.draw_kind(rng) for _ in range(6000))
    for kind, share in mix.ratios.items():
        assert abs(counts[kind] / 6000 - share) < 0.025, (kind, counts)


def test_a_kind_set_to_zero_never_appears(faces):
    (crop, pts), (donor, donor_pts) = faces
    mix = PseudoFakeMix({"sbi": 1.0, "splice": 0.0, "trace": 1.0}, seed=1)
    assert mix.kinds == ("sbi", "trace") and "splice" not in repr(mix)
    rng = np.random.default_rng(1)
    assert "splice" not in {mix.draw_kind(rng) for _ in range(2000)}
    for _ in range(4):
        fake = mix(crop, pts, donor=donor, donor_landmarks=donor_pts)
        assert fake.kind in ("sbi", "trace") and fake.label == "fake"


def test_kinds_that_cannot_be_made_are_left_out(faces):
    (crop, pts), (donor, donor_pts) = faces
    mix = PseudoFakeMix({"sbi": 1, "splice": 2, "trace": 1})
    assert mix.probabilities(donor=False) == pytest.approx({"sbi": 0.5, "trace": 0.5})
    rng = np.random.default_rng(2)
    assert "splice" not in {mix(crop, pts, rng).kind for _ in range(6)}
    assert "splice" not in {mix(crop, None, rng, donor=donor).kind for _ in range(6)}
    kinds = {mix(crop, pts, rng, donor=donor, donor_landmarks=donor_pts).kind for _ in range(12)}
    assert "splice" in kinds
    only_splice = PseudoFakeMix({"splice": 1})
    with pytest.raises(InputError, match="splice"):
        only_splice(crop, pts, 0)


def test_settings_reach_the_makers_and_validation(faces):
    crop, pts = faces[0]
    mix = PseudoFakeMix({"trace": 1}, settings={"trace": {"ops": ("nearest",), "factors": (4,)}})
    fake = mix(crop, pts, 0)
    assert fake.kind == "trace" and "ops=('nearest',)" in repr(mix)
    assert np.array_equal(fake.image[0:4, 0:4].reshape(-1, 3).min(0), fake.image[0, 0])
    for ratios in ({"gan": 1}, {"sbi": -1}, {"sbi": 0, "trace": 0}, {"sbi": float("nan")}):
        with pytest.raises(InputError):
            PseudoFakeMix(ratios)
    with pytest.raises(InputError, match="without a ratio"):
        PseudoFakeMix({"sbi": 1}, settings={"trace": {}})
    with pytest.raises(InputError, match="unknown settings"):
        PseudoFakeMix({"sbi": 1}, settings={"sbi": {"bogus": 1}})
    with pytest.raises(InputError, match="uint8"):
        mix(crop.astype(np.float32), pts, 0)
