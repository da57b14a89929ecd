"""Aligned face crops: rotate so the eyes are level, square box with a margin, fixed size."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facetrust.faces.types import Face


def similarity_matrix(
    center: tuple[float, float], side: float, angle: float, out_size: int
) -> np.ndarray:
    """2x3 affine taking image pixels to an ``out_size`` square that shows a ``side``-pixel square
    centred on ``center``, rotated by ``-angle`` radians (so a line at ``angle`` becomes level)."""
    s = out_size / side
    c, si = np.cos(angle), np.sin(angle)
    rot = s * np.array([[c, si], [-si, c]])
    t = np.array([out_size / 2, out_size / 2]) - rot @ np.asarray(center, dtype=np.float64)
    return np.hstack([rot, t[:, None]])


def warp(
    image: np.ndarray, matrix: np.ndarray, out_size: int, border: str = "replicate"
) -> np.ndarray:
    """Apply ``matrix`` to ``image`` into an ``out_size`` square; outside pixels replicate the
    edge (``border="replicate"``) or are black (``"constant"``)."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    interp = cv2.INTER_AREA if scale < 0.8 else cv2.INTER_LINEAR
    return cv2.warpAffine(
        image,
        matrix,
        (out_size, out_size),
        flags=interp,
        borderMode=cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT,
    )


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to ``(N, 2)`` points."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


class FaceAligner:
    """Cut an aligned, square crop around each face.

    Args:
        size: output side in pixels.
        margin: extra context on each side, as a fraction of the face box side (0.2 = 20 %).
        rotate: level the eyes (uses the 468 landmarks when present, else the keypoints).
    """

    def __init__(self, size: int = 224, margin: float = 0.2, rotate: bool = True) -> None:
        if size < 8:
            raise ValueError("crop size must be at least 8 pixels")
        if not 0.0 <= margin <= 2.0:
            raise ValueError("margin must be between 0 and 2")
        self.size = size
        self.margin = margin
        self.rotate = rotate

    def __repr__(self) -> str:
        return f"FaceAligner(size={self.size}, margin={self.margin}, rotate={self.rotate})"

    def matrix(self, face: Face) -> np.ndarray:
        side = max(face.width, face.height) * (1.0 + 2.0 * self.margin)
        angle = face.eye_angle() if self.rotate else 0.0
        return similarity_matrix(face.center, max(side, 1.0), angle, self.size)

    def __call__(self, image: np.ndarray, face: Face) -> np.ndarray:
        """Aligned crop of ``face`` from ``image`` (H, W, 3 uint8) as (size, size, 3) uint8."""
        return warp(image, self.matrix(face), self.size)


ALIGNMENT = "eyes-level-square"  # FaceAligner(rotate=True): eyes levelled, square box + margin


@dataclass(frozen=True)
class CropContract:
    """How face crops are cut: side in pixels, margin, alignment. Written into manifests by
    ``prepare`` and into checkpoints by ``train``; detection cuts crops by the checkpoint's
    contract, so training, evaluation and detection see the same pixels."""

    size: int
    margin: float
    alignment: str = ALIGNMENT

    def __post_init__(self) -> None:
        if int(self.size) < 8:
            raise ValueError("crop size must be at least 8 pixels")
        if not 0.0 <= float(self.margin) <= 2.0:
            raise ValueError("margin must be between 0 and 2")
        if self.alignment != ALIGNMENT:
            raise ValueError(f"unknown alignment {self.alignment!r} (known: {ALIGNMENT})")

    def aligner(self) -> FaceAligner:
        return FaceAligner(size=int(self.size), margin=float(self.margin), rotate=True)

    def describe(self) -> str:
        return f"{self.size} px, margin {self.margin:g}, {self.alignment}"
