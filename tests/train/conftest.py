"""Fixtures for the training building blocks: a real face crop with FaceMesh landmarks."""

from __future__ import annotations

import numpy as np
import pytest


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
