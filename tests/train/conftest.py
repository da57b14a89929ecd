"""Fixtures for the training building blocks: a real face crop with FaceMesh landmarks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facetrust.data.manifest import ManifestRow, write_manifest


@pytest.fixture(scope="session")
def face256(astronaut) -> np.ndarray:
    """A 256x256 crop of the astronaut with the face (about 100 px wide) in the middle."""
    return np.ascontiguousarray(astronaut[0:256, 96:352])


@pytest.fixture(scope="session")
def landmarks256(face256) -> np.ndarray:
    """The 468 FaceMesh landmarks ``(468, 2)`` of ``face256``, in its pixels."""
    from facetrust.faces import FaceDetector

    faces = FaceDetector()(face256)
    assert len(faces) == 1 and faces[0].landmarks is not None
    return np.asarray(faces[0].landmarks[:, :2], dtype=np.float64)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# ---- a small learnable set (tests/train/test_learning.py) ----

SIZE = 64
PATCH = 32


def _crop(rng: np.random.Generator, fake: bool) -> np.ndarray:
    """A smooth colour field with mild noise; fakes get a 24 px patch of 4 px stripes blended in
    at a random place (a texture a forger's blending would leave)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    base = rng.uniform(60, 200, 3)
    slope = rng.uniform(-50, 50, (2, 3))
    img = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
    img = img + rng.normal(0, 4, img.shape)
    if fake:
        p = PATCH
        y0, x0 = rng.integers(0, SIZE - p, 2)
        phase = rng.integers(0, 4)
        stripes = (((np.arange(p) + phase) // 2) % 2 * 2 - 1)[None, :, None] * 45.0
        if rng.random() < 0.5:
            stripes = stripes.transpose(1, 0, 2)
        img[y0 : y0 + p, x0 : x0 + p] += stripes
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def learnable_manifest(tmp_path_factory):
    """160 training, 200 validation crops (half fake), preset splits, crop contract recorded."""
    root = tmp_path_factory.mktemp("learnable")
    rng = np.random.default_rng(7)
    rows = []
    for split, n in (("train", 160), ("val", 200)):
        for i in range(n):
            fake = bool(i % 2)
            name = f"{split}{i}.png"
            Image.fromarray(_crop(rng, fake)).save(root / name)
            rows.append(
                ManifestRow(
                    path=f"{split}{i}.jpg",
                    label="fake" if fake else "real",
                    source="synthetic",
                    video_id=f"{split}{i}",
                    split=split,
                    crop=name,
                    crop_size=SIZE,
                    crop_margin=0.2,
                    crop_alignment="eyes-level-square",
                )
            )
    return write_manifest(root / "manifest.jsonl", rows)
