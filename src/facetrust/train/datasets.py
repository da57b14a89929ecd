"""Torch datasets over manifest rows: cached face crops, augmentations, pseudo-fakes."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from facetrust.data.manifest import ManifestRow, read_crop, resolve
from facetrust.errors import InputError
from facetrust.models.preprocess import to_tensor

Transform = Callable[[np.ndarray], np.ndarray]


class FaceCropDataset(Dataset):
    """Aligned face crops from a manifest, plus pseudo-fakes made from its reals.

    Items ``0 .. len(rows)-1`` are the rows (real fakes dropped when ``sbi_only``); then
    ``num_sbi`` pseudo-fakes, each made from a real row (cycled) by ``pseudo`` (a
    :class:`~facetrust.data.pseudo.PseudoFakeMix`; default: self-blended images only). A key
    may also be a :class:`~facetrust.data.sampling.BatchItem` ``(index, pseudo)``: row
    ``index`` itself, or a pseudo-fake made from it (its content-aligned twin).
    With a ``normaliser`` every image, real, fake or pseudo-fake, gets one random re-encode
    (a pseudo-fake is made from the re-encoded real, so its traces are not washed out).
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
        pseudo: Any = None,
        normaliser: Any = None,
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
        self.normaliser = normaliser
        self._reals = [i for i, r in enumerate(self.rows) if r.label == "real" and r.landmarks]
        self.num_sbi = int(round(sbi_ratio * len(self._reals))) if sbi_ratio > 0 else 0
        if sbi_ratio > 0 and not self._reals:
            raise InputError("pseudo-fakes need real faces with landmarks in the manifest")
        if pseudo is None:
            from facetrust.data.pseudo import PseudoFakeMix

            pseudo = PseudoFakeMix({"sbi": 1.0})
        self.pseudo = pseudo
        self._reals_by_source: dict[str, list[int]] = {}
        for i in self._reals:
            self._reals_by_source.setdefault(self.rows[i].source, []).append(i)

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

    def _landmarks(self, row: ManifestRow) -> np.ndarray | None:
        if not row.landmarks:
            return None
        return np.load(resolve(self.manifest, row.landmarks)).astype(np.float32)[:, :2]

    def _rng(self) -> np.random.Generator:
        # drawn from torch's generator: seeded per worker and epoch by the loader
        return np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))

    def _normalised(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return image if self.normaliser is None else self.normaliser(image, rng)

    def pseudo_fake(
        self, index: int, rng: np.random.Generator, control: bool = False
    ) -> np.ndarray:
        """A pseudo-fake made from row ``index`` (a real): normalised first, then faked; a
        donor for splices is another real of the same source when there is one. ``control``:
        the fake's real-labelled control instead (its maker's ``control``), from the same
        draws."""
        row = self.rows[index]
        image = self._normalised(self.load_crop(row), rng)
        peers = [j for j in self._reals_by_source.get(row.source, []) if j != index]
        peers = peers or [j for j in self._reals if j != index]
        donor = donor_lm = None
        if peers:
            d = self.rows[peers[int(rng.integers(len(peers)))]]
            donor, donor_lm = self.load_crop(d), self._landmarks(d)
        fake = self.pseudo(image, self._landmarks(row), rng, donor=donor, donor_landmarks=donor_lm)
        if control:
            return self.pseudo.makers[fake.kind].control(image, fake.image)
        return fake.image

    def raw_item(self, key) -> tuple[np.ndarray, int]:
        """The un-augmented crop (or fresh pseudo-fake) and its label."""
        rng = self._rng()
        if isinstance(key, tuple):  # a BatchItem of the paired sampler
            index, pseudo = int(key[0]), bool(key[1])
            if pseudo:
                return self.pseudo_fake(index, rng), 1
            row = self.rows[index]
            return self._normalised(self.load_crop(row), rng), row.y
        index = int(key)
        if index < len(self.rows):
            row = self.rows[index]
            return self._normalised(self.load_crop(row), rng), row.y
        return self.pseudo_fake(self._reals[(index - len(self.rows)) % len(self._reals)], rng), 1

    def __getitem__(self, key):
        image, y = self.raw_item(key)
        index = int(key[0]) if isinstance(key, tuple) else int(key)
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
