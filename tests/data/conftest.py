"""Fixtures for data preparation: tiny labelled folders of real face images, a counting detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


class CountingDetector:
    """Wraps a FaceDetector and counts how many images it was asked about."""

    version = "counting-test-detector"

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls = 0

    def __call__(self, image: np.ndarray):
        self.calls += 1
        return self.inner(image)


@pytest.fixture(scope="session")
def face_detector():
    from facetrust.faces import FaceDetector

    return FaceDetector(landmarks=True)


@pytest.fixture
def counting(face_detector) -> CountingDetector:
    return CountingDetector(face_detector)


@pytest.fixture(scope="session")
def small_face(astronaut) -> np.ndarray:
    """The astronaut photo at 192x192 (one face, ~40 px)."""
    return np.asarray(Image.fromarray(astronaut).resize((192, 192), Image.BILINEAR))


def shifted(rgb: np.ndarray, shift: tuple[int, int, int]) -> np.ndarray:
    """A "fake": the same face with a colour shift."""
    return np.clip(rgb.astype(np.int16) + np.array(shift, np.int16), 0, 255).astype(np.uint8)


def save(path: Path, rgb: np.ndarray, fmt: str = "JPEG", mode: str = "RGB", **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).convert(mode).save(path, fmt, **kw)
    return path


@pytest.fixture
def face_folder(tmp_path, small_face) -> Path:
    """``src/real`` (2 faces: JPEG q80, grayscale PNG), ``src/fake`` (2 colour-shifted JPEG q95
    faces, one nested deeper), a face-less noise image, a truncated JPEG and a text file named
    ``.jpg``."""
    src = tmp_path / "mydata"
    save(src / "real" / "a.jpg", small_face, quality=80)
    save(src / "real" / "b.png", small_face, "PNG", mode="L")
    save(src / "fake" / "c.jpg", shifted(small_face, (30, -10, 0)), quality=95)
    save(src / "fake" / "method1" / "d.jpg", shifted(small_face, (-20, 10, 25)), quality=95)
    rng = np.random.default_rng(0)
    save(src / "real" / "noise.png", rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), "PNG")
    good = (src / "real" / "a.jpg").read_bytes()
    (src / "fake" / "broken.jpg").write_bytes(good[: len(good) // 3])
    (src / "fake" / "notes.jpg").write_text("not an image")
    return src


@pytest.fixture(scope="session")
def save_image():
    """``save_image(path, rgb, fmt="JPEG", mode="RGB", **pil_options) -> path``."""
    return save


@pytest.fixture(scope="session")
def shift_colour():
    """``shift_colour(rgb, (dr, dg, db))``: a colour-shifted copy."""
    return shifted


@pytest.fixture(scope="session")
def touch():
    """``touch(root, ["real/a.jpg", ...])``: placeholder files (discovery goes by suffix)."""

    def make(root: Path, names: list[str]) -> Path:
        for n in names:
            p = root / n
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x")
        return root

    return make
