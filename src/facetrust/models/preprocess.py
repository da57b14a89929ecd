"""Preprocessing resolved from a checkpoint: square resize and the uint8 -> tensor step.

One place turns aligned uint8 RGB face crops into the normalised float tensor a network reads
(like timm's ``resolve_data_config`` + ``create_transform``). Detection, explanation, the
experts and training all call :func:`to_tensor`; :class:`Preprocess` adds the resize to the
network's input size with the interpolation used in training (``INTER_AREA``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["Preprocess", "resize_square", "to_tensor"]


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` (H, W, 3 uint8) resized to ``size x size`` with ``INTER_AREA`` (as in training:
    ``facetrust.data.transforms.eval_transform``); returned unchanged when already that size."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def to_tensor(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 RGB ``(H, W, 3)`` or ``(N, H, W, 3)`` -> normalised float32 ``(3, H, W)`` or
    ``(N, 3, H, W)``: ``(x / 255 - mean) / std`` per channel."""
    import torch

    a = np.asarray(images)
    if a.dtype != np.uint8 or a.ndim not in (3, 4) or a.shape[-1] != 3:
        raise ValueError(f"need uint8 RGB (H, W, 3) or (N, H, W, 3), got {a.shape} {a.dtype}")
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:  # e.g. a PIL buffer: torch warns on read-only memory
        a = a.copy()
    x = torch.from_numpy(a).float().div_(255.0)
    x = x.permute(2, 0, 1) if a.ndim == 3 else x.permute(0, 3, 1, 2)
    shape = (3, 1, 1) if a.ndim == 3 else (1, 3, 1, 1)
    m = torch.tensor(tuple(mean), dtype=torch.float32).view(shape)
    s = torch.tensor(tuple(std), dtype=torch.float32).view(shape)
    return (x - m) / s


@dataclass(frozen=True)
class Preprocess:
    """A network's input: ``size`` x ``size`` RGB normalised by ``mean`` / ``std``."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_meta(cls, meta) -> Preprocess:
        """From a :class:`~facetrust.models.CheckpointMeta` (input size, mean, std)."""
        return cls(int(meta.input_size), tuple(meta.mean), tuple(meta.std))

    def __call__(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        """Square uint8 crops of any one size -> ``(N, 3, size, size)`` float tensor."""
        return to_tensor(
            np.stack([resize_square(c, self.size) for c in crops]), self.mean, self.std
        )
