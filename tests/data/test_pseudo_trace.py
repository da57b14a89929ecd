"""``trace``: up-sampling traces on a real, content-aligned with it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facetrust.data.pseudo import PSEUDO_FAKES, TRACE_OPS, TraceConfig, upsample_trace
from facetrust.errors import InputError


@pytest.fixture(scope="module")
def crop(astronaut) -> np.ndarray:
    """A 256-px crop around the astronaut's face."""
    return np.ascontiguousarray(astronaut[20:276, 100:356])


def _gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)


def _peak(profile: np.ndarray, f: int) -> float:
    """Spectral magnitude of ``profile`` at the period-``f`` frequency over the median one."""
    n = len(profile) // f * f
    spec = np.abs(np.fft.rfft(profile[:n] - profile[:n].mean()))
    return float(spec[n // f] / np.median(spec[1:]))


def _gradient_peak(img: np.ndarray, f: int) -> float:
    """Period-``f`` peak of the column profile of |horizontal differences| (NPR-like)."""
    return _peak(np.abs(np.diff(_gray(img), axis=1)).mean(axis=0), f)


def _low_pass_error(a: np.ndarray, b: np.ndarray, sigma: float) -> float:
    blur = [cv2.GaussianBlur(x.astype(np.float32), (0, 0), sigma) for x in (a, b)]
    return float(np.abs(blur[0] - blur[1]).mean())


@pytest.mark.parametrize("op", TRACE_OPS)
@pytest.mark.parametrize("factor", [2, 4])
def test_periodic_trace_at_the_expected_frequency(crop, op, factor):
    fake, trace = upsample_trace(crop, 0, TraceConfig(strength=(0.03, 0.03)), op=op, factor=factor)
    assert fake.shape == crop.shape and fake.dtype == np.uint8
    assert trace.shape == crop.shape[:2] and trace.dtype == np.float32
    assert np.allclose(trace, np.abs(fake.astype(np.float32) - crop).mean(axis=2) / 255)
    assert _gradient_peak(crop, factor) < 2  # a real photo has no such period
    assert _gradient_peak(fake, factor) > 5
    # content-aligned: the same picture at low frequencies, changed at high ones
    assert _low_pass_error(fake, crop, 1.5 * factor) < 1.5
    assert trace.mean() * 255 > 3


def test_transposed_convolution_leaves_a_checkerboard(crop):
    """A random transposed-convolution kernel modulates brightness with period ``factor``
    (checkerboard), which bilinear interpolation does not."""
    strong = TraceConfig(strength=(0.15, 0.15))
    for f in (2, 4):
        checker = [
            _peak(_gray(upsample_trace(crop, s, strong, op="transposed", factor=f)[0]).mean(0), f)
            for s in range(3)
        ]
        bilinear = upsample_trace(crop, 0, strong, op="bilinear", factor=f)[0]
        smooth = _peak(_gray(bilinear).mean(0), f)
        assert min(checker) > 5 * max(smooth, 1.0), (f, checker, smooth)


def test_maker_labels_fake_seeded_and_needs_no_landmarks(crop):
    maker = PSEUDO_FAKES["trace"](ops=("transposed",), factors=(4,))
    a, b = maker(crop, None, 9), maker(crop, None, np.random.default_rng(9))
    assert a.kind == "trace" and a.label == "fake" and a.y == 1
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert "ops=('transposed',)" in repr(maker)
    odd = np.ascontiguousarray(crop[:101, :67])  # sizes not divisible by the factor
    fake, trace = upsample_trace(odd, 1, op="pixel_shuffle", factor=4)
    assert fake.shape == odd.shape and trace.shape == odd.shape[:2]


def test_bad_input(crop):
    with pytest.raises(InputError, match="uint8"):
        upsample_trace(crop.astype(np.float32), 0)
    with pytest.raises(InputError, match="uint8"):
        upsample_trace(crop[..., 0], 0)
    with pytest.raises(InputError, match="too small"):
        upsample_trace(crop[:6, :6], 0, factor=4)
    with pytest.raises(InputError, match="op"):
        upsample_trace(crop, 0, op="deconv")
    with pytest.raises(InputError, match="factor"):
        upsample_trace(crop, 0, factor=3)
    with pytest.raises(InputError, match="rng"):
        upsample_trace(crop, "seed")
    for kwargs in ({"ops": ()}, {"factors": (3,)}, {"strength": (0.5, 0.1)}):
        with pytest.raises(InputError):
            TraceConfig(**kwargs)
