"""Torch datasets over manifest rows: cached face crops, augmentations, SBI pseudo-fakes."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from facetrust.data.manifest import ManifestRow, read_crop, resolve
from facetrust.errors import InputError
from facetrust.models.preprocess import to_tensor

Transform = Callable[[np.ndarray], np.ndarray]


class FaceCropDataset(Dataset):
    """Aligned face crops from a manifest, plus optional self-blended pseudo-fakes.

    Items ``0 .. len(rows)-1`` are the rows (real fakes dropped when ``sbi_only``); then
    ``num_sbi`` pseudo-fakes, each made from a real row (cycled) by ``sbi.self_blend``.
    Each item is ``(x, y, index)``, or ``(x, x2, y, index)`` with ``two_views`` (two independent
    augmentations of the same face, for a consistency loss).
    """

    def __init__(
        self,
        rows: Sequence[ManifestRow],
        manifest: str | os.PathLike,
        transform: Transform,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        sbi_ratio: float = 0.0,
        sbi_only: bool = False,
        two_views: bool = False,
    ) -> None:
        rows = [r for r in rows if r.crop]
        if sbi_only:
            rows = [r for r in rows if r.label == "real"]
        if not rows:
            raise InputError("no usable rows: the manifest has no face crops (run `prepare`)")
        self.rows = list(rows)
        self.manifest = manifest
        self.transform = transform
        self.mean, self.std = tuple(mean), tuple(std)
        self.two_views = two_views
        self._reals = [i for i, r in enumerate(self.rows) if r.label == "real" and r.landmarks]
        self.num_sbi = int(round(sbi_ratio * len(self._reals))) if sbi_ratio > 0 else 0
        if sbi_ratio > 0 and not self._reals:
            raise InputError("SBI needs real faces with landmarks in the manifest")

    def __len__(self) -> int:
        return len(self.rows) + self.num_sbi

    @property
    def labels(self) -> np.ndarray:
        base = np.array([r.y for r in self.rows], dtype=np.int64)
        return np.concatenate([base, np.ones(self.num_sbi, dtype=np.int64)])

    def source_of(self, index: int) -> str:
        if index < len(self.rows):
            return self.rows[index].source
        return "sbi"

    def load_crop(self, row: ManifestRow) -> np.ndarray:
        return read_crop(self.manifest, row.crop)

    def raw_item(self, index: int) -> tuple[np.ndarray, int]:
        """The un-augmented crop (or fresh pseudo-fake) and its label."""
        if index < len(self.rows):
            row = self.rows[index]
            return self.load_crop(row), row.y
        from facetrust.data.sbi import self_blend

        row = self.rows[self._reals[(index - len(self.rows)) % len(self._reals)]]
        image = self.load_crop(row)
        landmarks = np.load(resolve(self.manifest, row.landmarks)).astype(np.float32)
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
        fake, _ = self_blend(image, landmarks[:, :2], rng)
        return fake, 1

    def __getitem__(self, index: int):
        image, y = self.raw_item(index)
        x = to_tensor(self.transform(image), self.mean, self.std)
        if self.two_views:
            x2 = to_tensor(self.transform(image), self.mean, self.std)
            return x, x2, torch.tensor(float(y)), index
        return x, torch.tensor(float(y)), index


def balanced_weights(labels: np.ndarray) -> torch.Tensor:
    """Per-item sampling weights giving each class the same total weight."""
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    w = 1.0 / np.maximum(counts[labels], 1.0)
    return torch.as_tensor(w, dtype=torch.double)
