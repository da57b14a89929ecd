"""Frequency expert: a linear head on the log radial power spectrum of the grey crop.

Generators and face-swap blending leave traces in the high-frequency fall-off.
"""

from __future__ import annotations

import cv2
import numpy as np

from facetrust.detect.experts.base import Expert, LinearHead, RoutedHead, register_expert
from facetrust.models.preprocess import resize_square

__all__ = ["FREQ_BINS", "FrequencyExpert", "frequency_features"]

FREQ_SIZE = 128  # spectra are taken on the crop resized to this side
FREQ_BINS = 48


def frequency_features(crop: np.ndarray, bins: int = FREQ_BINS) -> np.ndarray:
    """Log radial power spectrum of an RGB uint8 crop: ``bins`` azimuthal means + 2 ratios.

    The crop is resized to 128 x 128 and turned grey; a Hann window removes the border's
    spectral leak. The last two values are the high/low and mid/low band energy ratios (log).
    """
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
        raise ValueError(f"need an RGB uint8 crop, got {crop.shape} {crop.dtype}")
    small = _resize(crop, FREQ_SIZE)
    g = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float64) / 255.0
    g -= g.mean()
    win = np.outer(np.hanning(FREQ_SIZE), np.hanning(FREQ_SIZE))
    power = np.abs(np.fft.fftshift(np.fft.fft2(g * win))) ** 2
    yy, xx = np.indices(power.shape)
    c = FREQ_SIZE / 2
    r = np.hypot(yy - c, xx - c) / c  # 0 at DC, 1 at the Nyquist edge (corners > 1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(r.ravel(), edges) - 1, 0, bins - 1)
    keep = r.ravel() <= 1.0
    sums = np.bincount(idx[keep], weights=power.ravel()[keep], minlength=bins)
    counts = np.maximum(np.bincount(idx[keep], minlength=bins), 1)
    radial = np.log(sums / counts + 1e-12)
    band = [power.ravel()[keep & (r.ravel() >= lo) & (r.ravel() < hi)].sum() for lo, hi in
            ((0.02, 0.25), (0.25, 0.6), (0.6, 1.0))]  # fmt: skip
    low = band[0] + 1e-12
    ratios = np.log([band[2] / low + 1e-12, band[1] / low + 1e-12])
    return np.concatenate([radial, ratios]).astype(np.float32)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] > size:
        return resize_square(img, size)
    if img.shape[0] == size and img.shape[1] == size:
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)


@register_expert
class FrequencyExpert(Expert):
    """Log radial power spectrum (``bins`` rings + 2 band ratios) -> linear head -> logit."""

    name = "frequency"

    def __init__(self, head: LinearHead | RoutedHead | None = None, bins: int = FREQ_BINS) -> None:
        super().__init__(head, bins=int(bins))
        self.bins = int(bins)

    def features(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, self.bins + 2), np.float32)
        return np.stack([frequency_features(c, self.bins) for c in crops])
