"""``splice``: a landmark region from another real face, aligned, colour-matched, feathered."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facetrust.data.pseudo import PSEUDO_FAKES, SPLICE_REGIONS, SpliceConfig, splice
from facetrust.data.pseudo.splice import region_hull_mask, splice_reach
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


@pytest.mark.parametrize("region", list(SPLICE_REGIONS))
def test_change_stays_inside_the_region(faces, region):
    (crop, pts), (donor, donor_pts) = faces
    fake, mask = splice(crop, pts, donor, donor_pts, np.random.default_rng(1), region=region)
    assert fake.shape == crop.shape and fake.dtype == np.uint8
    assert mask.shape == crop.shape[:2] and mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0

    hull = region_hull_mask(pts, crop.shape[:2], region)
    dist = cv2.distanceTransform((1 - hull).astype(np.uint8), cv2.DIST_L2, 5)
    far = dist > splice_reach(pts)
    changed = np.any(fake != crop, axis=2)
    assert far.mean() > 0.3 and not changed[far].any() and not mask[far].any()
    assert np.array_equal(changed & (mask == 0), np.zeros_like(changed))  # mask says where

    core = cv2.erode(hull, np.ones((5, 5), np.uint8)).astype(bool)
    assert mask[core].min() >= 0.65  # ~ the smallest blend ratio, 0.7, inside the region
    diff = np.abs(fake.astype(int) - crop.astype(int)).mean(axis=2)
    assert diff[core].mean() > 2.0  # the mirrored donor's features replaced the target's


def test_regions_lie_where_their_names_say(faces):
    crop, pts = faces[0]
    ys = {
        r: np.nonzero(region_hull_mask(pts, crop.shape[:2], r))[0].mean()
        for r in ("eyes", "nose", "mouth")
    }
    assert ys["eyes"] < ys["nose"] < ys["mouth"]
    inner = region_hull_mask(pts, crop.shape[:2], "inner_face").astype(bool)
    for r in ("eyes", "nose", "mouth"):
        part = region_hull_mask(pts, crop.shape[:2], r).astype(bool)
        assert (part & ~inner).sum() <= 0.02 * part.sum()


def test_donor_is_aligned_by_the_landmarks(faces):
    """A donor that is the target shifted by (7, -5) px, with its landmarks shifted alike, is
    put back in place: without colour change the splice reproduces the target."""
    crop, pts = faces[0]
    m = np.float32([[1, 0, 7], [0, 1, -5]])
    donor = cv2.warpAffine(crop, m, (256, 256), borderMode=cv2.BORDER_REFLECT_101)
    cfg = SpliceConfig(color_match=0.0, blend_ratios=(1.0,))
    fake, mask = splice(crop, pts, donor, pts + [7, -5], 3, cfg, region="inner_face")
    inside = mask > 0.5
    err = np.abs(fake.astype(int) - crop.astype(int))[inside].mean()
    assert err < 1.5
    unaligned, _ = splice(crop, pts, donor, pts, 3, cfg, region="inner_face")
    assert np.abs(unaligned.astype(int) - crop.astype(int))[inside].mean() > 3 * err + 2


def test_colour_match_pulls_the_donor_to_the_target(faces):
    (crop, pts), (donor, donor_pts) = faces
    tinted = np.clip(donor.astype(int) + [60, -30, -30], 0, 255).astype(np.uint8)
    raw = SpliceConfig(color_match=0.0, blend_ratios=(1.0,))
    matched = SpliceConfig(color_match=1.0, blend_ratios=(1.0,))
    inside = region_hull_mask(pts, crop.shape[:2], "inner_face").astype(bool)
    errs = []
    for cfg in (raw, matched):
        fake, _ = splice(crop, pts, tinted, donor_pts, 0, cfg, region="inner_face")
        errs.append(np.abs(fake[inside].mean(0) - crop[inside].mean(0)).max())
    assert errs[0] > 25 and errs[1] < 3


def test_maker_labels_fake_and_is_seeded(faces):
    (crop, pts), (donor, donor_pts) = faces
    maker = PSEUDO_FAKES["splice"]()
    a = maker(crop, pts, 5, donor=donor, donor_landmarks=donor_pts)
    b = maker(crop, pts, np.random.default_rng(5), donor=donor, donor_landmarks=donor_pts)
    assert a.kind == "splice" and a.label == "fake" and a.y == 1
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert "SpliceConfig(" in repr(maker)


def test_bad_input(faces):
    (crop, pts), (donor, donor_pts) = faces
    maker = PSEUDO_FAKES["splice"]()
    with pytest.raises(InputError, match="image's landmarks"):
        maker(crop, None, 0, donor=donor, donor_landmarks=donor_pts)
    with pytest.raises(InputError, match="donor's landmarks"):
        maker(crop, pts, 0, donor=donor, donor_landmarks=None)
    with pytest.raises(InputError, match="needs a donor"):
        maker(crop, pts, 0)
    with pytest.raises(InputError, match="468"):
        splice(crop, pts[:68], donor, donor_pts, 0)
    with pytest.raises(InputError, match="468"):
        splice(crop, np.full_like(pts, np.nan), donor, donor_pts, 0)
    with pytest.raises(InputError, match="uint8"):
        splice(crop.astype(np.float32), pts, donor, donor_pts, 0)
    with pytest.raises(InputError, match="uint8"):
        splice(crop, pts, donor[..., 0], donor_pts, 0)
    with pytest.raises(InputError, match="region"):
        splice(crop, pts, donor, donor_pts, 0, region="ears")
    with pytest.raises(InputError, match="outside"):
        splice(crop, pts + 1000, donor, donor_pts, 0, region="mouth")
    with pytest.raises(InputError):
        SpliceConfig(regions=("ears",))
    with pytest.raises(InputError):
        SpliceConfig(grow=(0.2, 0.1))
