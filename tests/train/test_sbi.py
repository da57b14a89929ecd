import cv2
import numpy as np
import pytest

from facetrust.data.sbi import (
    REGIONS,
    SBIConfig,
    ellipse_polygon,
    landmark_hull_mask,
    make_pseudo_fake,
    mask_reach,
    self_blend,
)
from facetrust.errors import InputError


def _hull(points, shape):
    m = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(m, np.round(cv2.convexHull(points.astype(np.float32))).astype(np.int32), 1)
    return m


def _dist_outside(hull):
    return cv2.distanceTransform((1 - hull).astype(np.uint8), cv2.DIST_L2, 5)


def _dist_inside(hull):
    return cv2.distanceTransform(hull.astype(np.uint8), cv2.DIST_L2, 5)


def test_mask_zero_outside_hull_and_one_deep_inside(landmarks256):
    cfg = SBIConfig(regions=("full",))
    hull = _hull(landmarks256, (256, 256))
    reach = mask_reach(landmarks256, (256, 256), cfg)
    outside, inside = _dist_outside(hull), _dist_inside(hull)
    deep = inside > 2 * reach
    assert deep.sum() > 100  # the test means something
    for seed in range(12):
        m = landmark_hull_mask(landmarks256, (256, 256), np.random.default_rng(seed), cfg=cfg)
        assert m.dtype == np.float32 and m.shape == (256, 256)
        assert m.min() >= 0 and m.max() == pytest.approx(1.0)
        assert np.all(m[outside > reach] == 0)
        assert np.all(m[deep] > 0.99)


def test_mask_regions_lie_inside_the_full_hull(landmarks256):
    hull = _hull(landmarks256, (256, 256))
    reach = mask_reach(landmarks256, (256, 256))
    outside = _dist_outside(hull)
    areas, centres = {}, {}
    for region in REGIONS:
        m = landmark_hull_mask(
            landmarks256, (256, 256), np.random.default_rng(0), deform=False, region=region
        )
        assert np.all(m[outside > reach] == 0), region
        areas[region] = float(m.sum())
        ys, _ = np.nonzero(m > 0.5)
        centres[region] = ys.mean()
    assert all(areas[r] < areas["full"] for r in REGIONS if r != "full")
    assert centres["lower"] > centres["full"] + 10  # below the eyes


def test_mask_non_square_size_is_h_w(landmarks256):
    pts = landmarks256 - [28, 0]  # a 256 x 200 crop of the same face
    m = landmark_hull_mask(pts, (256, 200), np.random.default_rng(0), region="full")
    assert m.shape == (256, 200)
    hull = _hull(pts, (256, 200))
    assert np.all(m[_dist_outside(hull) > mask_reach(pts, (256, 200))] == 0)
    assert m[hull > 0].mean() > 0.8


@pytest.mark.parametrize(
    "bad",
    [
        None,
        np.full((468, 2), 100.0),  # all in one point
        np.full((468, 2), np.nan),
        np.random.default_rng(0).uniform(1000, 2000, (468, 2)),  # outside the crop
    ],
    ids=["none", "collapsed", "nan", "outside"],
)
def test_degenerate_landmarks_fall_back_to_centred_ellipse(bad):
    m = landmark_hull_mask(bad, (200, 160), np.random.default_rng(3))
    ref = landmark_hull_mask(None, (200, 160), np.random.default_rng(3))
    assert np.array_equal(m, ref)
    ys, xs = np.nonzero(m > 0.5)
    assert abs(xs.mean() - 80) < 8 and abs(ys.mean() - 100) < 10
    ell = np.zeros((200, 160), np.uint8)
    cv2.fillPoly(ell, [np.round(ellipse_polygon((200, 160))).astype(np.int32)], 1)
    assert np.all(m[_dist_outside(ell) > mask_reach(None, (200, 160))] == 0)


def test_ellipse_hull_option_ignores_landmarks(landmarks256):
    cfg = SBIConfig(hull="ellipse")
    a = landmark_hull_mask(landmarks256, (256, 256), np.random.default_rng(1), cfg=cfg)
    b = landmark_hull_mask(None, (256, 256), np.random.default_rng(1), cfg=cfg)
    assert np.array_equal(a, b)


def test_self_blend_changes_only_inside_the_mask(face256, landmarks256):
    for seed in range(8):
        fake, m = self_blend(face256, landmarks256, np.random.default_rng(seed))
        assert fake.shape == face256.shape and fake.dtype == np.uint8
        assert m.shape == face256.shape[:2] and m.dtype == np.float32
        assert min(abs(float(m.max()) - r) for r in SBIConfig().blend_ratios) < 1e-6
        out = m == 0
        assert out.mean() > 0.5
        assert np.array_equal(fake[out], face256[out])  # exactly the original outside
        inner = m >= 0.99 * m.max()
        diff = np.abs(fake.astype(int) - face256.astype(int))[inner]
        assert diff.mean() > 1.0 and (diff.max(axis=1) > 0).mean() > 0.5, seed


def test_self_blend_with_full_ratio_replaces_the_inside(face256, landmarks256):
    cfg = SBIConfig(blend_ratios=(1.0,), regions=("full",))
    fake, m = self_blend(face256, landmarks256, np.random.default_rng(0), cfg)
    assert m.max() == pytest.approx(1.0)
    hull = _hull(landmarks256, (256, 256))
    deep = _dist_inside(hull) > 2 * mask_reach(landmarks256, (256, 256), cfg)
    diff = np.abs(fake.astype(int) - face256.astype(int))
    assert diff[deep].mean() > 3


def test_self_blend_is_deterministic_for_a_seed(face256, landmarks256):
    a = self_blend(face256, landmarks256, np.random.default_rng(42))
    b = self_blend(face256, landmarks256, np.random.default_rng(42))
    c = self_blend(face256, landmarks256, np.random.default_rng(43))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    d = make_pseudo_fake(face256, landmarks256, np.random.default_rng(42))
    assert np.array_equal(d, a[0])


def test_self_blend_without_landmarks_and_with_3d_landmarks(face256, landmarks256):
    fake, m = self_blend(face256, None, np.random.default_rng(0))
    assert fake.shape == face256.shape and m.any()
    assert np.array_equal(fake[m == 0], face256[m == 0])
    pts3 = np.hstack([landmarks256, np.zeros((468, 1))])
    a = self_blend(face256, pts3, np.random.default_rng(5))
    b = self_blend(face256, landmarks256, np.random.default_rng(5))
    assert np.array_equal(a[0], b[0])


def test_bad_arguments_raise(face256, landmarks256):
    rng = np.random.default_rng(0)
    with pytest.raises(InputError):
        self_blend(face256.astype(np.float32), landmarks256, rng)
    with pytest.raises(InputError):
        self_blend(face256, landmarks256.ravel(), rng)
    with pytest.raises(InputError):
        landmark_hull_mask(landmarks256, (256, 256), rng, region="ears")
    with pytest.raises(InputError):
        SBIConfig(blend_ratios=(0.0, 1.5))
    with pytest.raises(InputError):
        SBIConfig(regions=("full", "nose"))
    with pytest.raises(InputError):
        SBIConfig(mask_blur=(9, 3))
