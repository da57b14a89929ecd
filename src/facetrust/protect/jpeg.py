"""Differentiable JPEG compression: a function and a thin module (kornia's codec underneath).

``diff_jpeg(image, quality)`` encodes and decodes ``(B, 3, H, W)`` RGB in [0, 1] with the
standard JPEG tables scaled by ``quality`` (4:2:0 chroma subsampling, 8x8 DCT). Rounding of the
DCT coefficients is replaced by the polynomial ``round(x) + (x - round(x))**3`` (Shin & Song 2017,
as implemented by ``kornia.enhance.jpeg_codec_differentiable``), so gradients flow to the
pixels. The forward output is close to, but not bit-identical with, a real JPEG codec.
"""

from __future__ import annotations

import torch
from torch import nn

from facetrust.errors import InputError

__all__ = ["DiffJPEG", "diff_jpeg"]


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor):
        raise InputError(f"diff_jpeg needs a torch.Tensor, got {type(image).__name__}")
    if image.ndim != 4 or image.shape[1] != 3:
        raise InputError(f"diff_jpeg needs (B, 3, H, W) RGB, got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise InputError(f"diff_jpeg needs a float tensor in [0, 1], got {image.dtype}")
    if image.shape[0] == 0 or image.shape[2] == 0 or image.shape[3] == 0:
        raise InputError(f"diff_jpeg got an empty image batch: {tuple(image.shape)}")


def _quality_tensor(quality: float | torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    q = torch.as_tensor(quality, dtype=image.dtype, device=image.device).reshape(-1)
    if q.numel() not in (1, image.shape[0]):
        raise InputError(
            f"quality must be a scalar or one value per image ({image.shape[0]}), "
            f"got {q.numel()} values"
        )
    if not bool(((q >= 1) & (q <= 100)).all()):
        raise InputError("JPEG quality must lie in [1, 100]")
    return q


def diff_jpeg(image: torch.Tensor, quality: float | torch.Tensor) -> torch.Tensor:
    """JPEG-compress and decompress ``image`` differentiably.

    Args:
        image: ``(B, 3, H, W)`` float RGB in [0, 1] (any H, W: padded to multiples of 16 inside).
        quality: JPEG quality in [1, 100], a scalar or a ``(B,)`` tensor (one per image).
    Returns:
        ``(B, 3, H, W)`` decoded image, same dtype, clamped to [0, 1].
    """
    _check_image(image)
    q = _quality_tensor(quality, image)
    from kornia.enhance import jpeg_codec_differentiable

    return jpeg_codec_differentiable(image, q).clamp(0.0, 1.0)


class DiffJPEG(nn.Module):
    """Module form of :func:`diff_jpeg` with a fixed quality."""

    def __init__(self, quality: float = 75.0) -> None:
        super().__init__()
        if not 1 <= float(quality) <= 100:
            raise InputError(f"JPEG quality must lie in [1, 100], got {quality}")
        self.quality = float(quality)

    def extra_repr(self) -> str:
        return f"quality={self.quality:g}"

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return diff_jpeg(image, self.quality)
