"""468-point face landmarks with MediaPipe FaceMesh."""

from __future__ import annotations

import numpy as np

from facetrust.faces._tflite import TfliteModel
from facetrust.faces.align import similarity_matrix, warp
from facetrust.faces.types import Face

ROI_SCALE = 1.5  # MediaPipe enlarges the detection box by this much for the mesh model


class FaceMesh:
    """Predict 468 landmarks for a detected face.

    ``__call__(image, face)`` returns ``(landmarks (468, 3) in image pixels, presence score)``.
    """

    def __init__(self, threads: int | None = None) -> None:
        self._model = TfliteModel("face_landmark.tflite", threads)
        self.size = self._model.input_size

    def __repr__(self) -> str:
        return "FaceMesh()"

    def __call__(
        self, image: np.ndarray, face: Face, border: str = "constant"
    ) -> tuple[np.ndarray, float]:
        """Landmarks and presence score; ``border`` fills the ROI outside the image: black
        ("constant", as MediaPipe) or edge pixels ("replicate", better for some tight crops)."""
        side = max(face.width, face.height) * ROI_SCALE
        angle = float(np.arctan2(*(face.keypoints[1] - face.keypoints[0])[::-1]))
        m = similarity_matrix(face.center, side, angle, self.size)
        patch = warp(image, m, self.size, border=border).astype(np.float32)[None] / 255.0
        raw, flag = self._model(patch)
        pts = raw.reshape(468, 3).astype(np.float64)
        inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
        xy = pts[:, :2] @ inv[:, :2].T + inv[:, 2]
        z = pts[:, 2:3] * side / self.size
        score = float(1.0 / (1.0 + np.exp(-np.clip(flag.reshape(-1)[0], -80, 80))))
        return np.hstack([xy, z]), score
