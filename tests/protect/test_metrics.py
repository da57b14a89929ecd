import math

import numpy as np
import pytest

from facetrust.errors import InputError
from facetrust.protect.metrics import identity_band, linf, psnr, ssim


def test_psnr_known_values():
    a = np.zeros((8, 8, 3), np.uint8)
    assert math.isinf(psnr(a, a))
    b = a.copy()
    b[...] = 1  # MSE 1 -> 10 log10(255^2)
    assert psnr(a, b) == pytest.approx(48.1308, abs=1e-3)


def test_ssim_matches_scikit_image(astronaut):
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a = astronaut[:200, :180]
    b = np.clip(a.astype(int) + rng.integers(-12, 13, a.shape), 0, 255).astype(np.uint8)
    ref = structural_similarity(
        a,
        b,
        channel_axis=2,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert ssim(a, b) == pytest.approx(ref, abs=1e-4)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a[..., 0], b[..., 0]) < 1.0


def test_bands_and_linf():
    assert identity_band(-0.2) == "strong"
    assert identity_band(0.29) == "strong"
    assert identity_band(0.3) == "moderate"
    assert identity_band(0.59) == "moderate"
    assert identity_band(0.6) == "weak"
    assert identity_band(1.0) == "weak"
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[1, 2, 0] = 7
    assert linf(a, b) == 7


def test_shape_mismatch():
    with pytest.raises(InputError):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(InputError):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))


@pytest.mark.parametrize("window", [(40, 30, 120, 100), (0, 0, 64, 48), (150, 100, 200, 160)])
def test_window_psnr_ssim_equal_full_image(astronaut, window):
    """The protector measures only the changed window; the figures equal full-image ones."""
    from facetrust.protect.protector import _window_psnr, _window_ssim

    a = astronaut[:160, :200].copy()
    b = a.copy()
    x0, y0, x1, y1 = window
    rng = np.random.default_rng(1)
    noise = rng.integers(-9, 10, (y1 - y0, x1 - x0, 3))
    b[y0:y1, x0:x1] = np.clip(a[y0:y1, x0:x1].astype(int) + noise, 0, 255)
    assert _window_ssim(a, b, window) == pytest.approx(ssim(a, b), abs=1e-9)
    p = _window_psnr(a[y0:y1, x0:x1], b[y0:y1, x0:x1], a.shape[0] * a.shape[1])
    assert p == pytest.approx(psnr(a, b), abs=1e-9)
