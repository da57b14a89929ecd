import numpy as np
import pytest

from facetrust.errors import InputError
from facetrust.faces import Face
from facetrust.protect.mask import face_mask, faces_mask
from facetrust.protect.warp import apply_warp, displacement_field, micro_warp


@pytest.mark.parametrize("max_px", [0.5, 1.5, 2.0])
def test_no_pixel_moves_more_than_the_limit(astronaut, astronaut_faces, max_px):
    field = displacement_field(
        astronaut.shape[:2], astronaut_faces, max_px, np.random.default_rng(0)
    )
    norm = np.sqrt((field**2).sum(-1))
    assert norm.max() <= max_px + 1e-5
    assert norm.max() > 0.9 * max_px  # the amplitude is used
    mask = faces_mask(astronaut.shape[:2], astronaut_faces)
    assert np.all(field[mask == 0] == 0)


def test_outside_the_mask_the_image_is_unchanged(astronaut, astronaut_faces):
    x = astronaut.astype(np.float32) / 255
    warped, field = micro_warp(x, astronaut_faces, 2.0, np.random.default_rng(1))
    mask = faces_mask(astronaut.shape[:2], astronaut_faces)
    outside = mask == 0
    assert outside.mean() > 0.5
    assert np.array_equal(warped[outside], x[outside])
    assert np.abs(warped - x).max() > 0.05  # the face did move
    # smooth field: neighbouring displacements differ by a small fraction of a pixel
    assert np.abs(np.diff(field, axis=0)).max() < 0.2
    assert np.abs(np.diff(field, axis=1)).max() < 0.2


def test_two_faces_overlap_is_clipped():
    kp = np.array([[40, 50], [60, 50], [50, 60], [50, 70], [35, 55], [65, 55]], float)
    faces = [Face((30, 40, 70, 80), 0.9, kp), Face((34, 40, 74, 80), 0.9, kp + [4, 0])]
    field = displacement_field((120, 120), faces, 2.0, np.random.default_rng(2))
    assert np.sqrt((field**2).sum(-1)).max() <= 2.0 + 1e-5


def test_keypoints_only_face_and_mask_range():
    kp = np.array([[40, 50], [60, 50], [50, 60], [50, 70], [35, 55], [65, 55]], float)
    face = Face((30, 40, 70, 80), 0.9, kp)
    mask, (x0, y0, x1, y1) = face_mask((120, 120), face)
    assert mask.shape == (y1 - y0, x1 - x0)
    assert mask.max() == pytest.approx(1.0) and mask.min() == 0.0
    field = displacement_field((120, 120), [face], 1.0)
    assert np.sqrt((field**2).sum(-1)).max() <= 1.0 + 1e-5


def test_limits_and_shapes():
    with pytest.raises(InputError):
        displacement_field((10, 10), [], 2.5)
    with pytest.raises(InputError):
        apply_warp(np.zeros((10, 10, 3), np.float32), np.zeros((10, 11, 2), np.float32))
    x = np.random.default_rng(0).random((10, 10, 3)).astype(np.float32)
    assert np.array_equal(apply_warp(x, np.zeros((10, 10, 2), np.float32)), x)
