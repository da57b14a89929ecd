"""Fixtures for the protection tests: tiny random encoders, one shared face detector."""

from __future__ import annotations

import numpy as np
import pytest

from facetrust.faces import Face


@pytest.fixture(scope="session")
def face_detector():
    from facetrust.faces import FaceDetector

    return FaceDetector()


@pytest.fixture(scope="session")
def astronaut_faces(face_detector, astronaut) -> list[Face]:
    faces = face_detector(astronaut)
    assert len(faces) == 1
    return faces


@pytest.fixture(scope="session")
def small_portrait(astronaut) -> np.ndarray:
    """A 160 x 160 crop with the astronaut's face filling most of it (fast to protect)."""
    from PIL import Image

    return np.asarray(Image.fromarray(astronaut[30:250, 120:340]).resize((160, 160)))


@pytest.fixture(scope="session")
def tiny_protector(face_detector):
    """A Protector with one tiny random-weight encoder, three PGD steps and a 1 px warp."""
    from facetrust.protect import Protector

    return Protector(
        encoders=("tiny",),
        steps=3,
        warp_px=1.0,
        precision="float32",
        detector=face_detector,
        seed=1,
    )


@pytest.fixture(scope="session")
def noise_image() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (96, 128, 3), dtype=np.uint8)
