"""Face and box types."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Order of BlazeFace keypoints (as seen in the image: "right eye" is the subject's right eye).
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")


@dataclass
class Face:
    """One detected face, in pixel coordinates of the image it was found in.

    Attributes:
        box: ``(x1, y1, x2, y2)`` float pixels.
        score: detector confidence in [0, 1].
        keypoints: ``(6, 2)`` pixels, in ``KEYPOINT_NAMES`` order.
        landmarks: ``(468, 3)`` FaceMesh points (x, y in pixels, z relative) or ``None``.
        crop: aligned RGB crop ``(S, S, 3)`` uint8, filled in by ``FaceAligner``, or ``None``.
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray
    landmarks: np.ndarray | None = None
    crop: np.ndarray | None = field(default=None, repr=False)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    def eye_angle(self) -> float:
        """Angle in radians of the line from the right eye to the left eye (0 = level)."""
        src = self.landmarks_eyes() if self.landmarks is not None else self.keypoints[:2]
        (rx, ry), (lx, ly) = src
        return float(np.arctan2(ly - ry, lx - rx))

    def landmarks_eyes(self) -> np.ndarray:
        """Eye centres from the 468 landmarks (mean of each eye contour), ``(2, 2)``."""
        assert self.landmarks is not None
        right = self.landmarks[list(_RIGHT_EYE), :2].mean(axis=0)
        left = self.landmarks[list(_LEFT_EYE), :2].mean(axis=0)
        return np.stack([right, left])

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "det_score": round(float(self.score), 4),
            "keypoints": [[round(float(x), 1), round(float(y), 1)] for x, y in self.keypoints],
        }


# FaceMesh contour indices of the eye seen on the image's left (subject's right) and right.
_RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173)
_LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes ``a`` (N, 4) and ``b`` (M, 4) as ``(N, M)``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, iou_threshold: float = 0.3
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Blend overlapping detections as MediaPipe does (score-weighted mean of each cluster).

    Args:
        boxes: ``(N, 4)`` x1, y1, x2, y2. scores: ``(N,)``. points: ``(N, K, 2)`` keypoints.
    Returns:
        A list of ``(box, score, points)``, best first; the score is the cluster's best.
    """
    order = np.argsort(-scores)
    remaining = list(order)
    out = []
    while remaining:
        top = remaining[0]
        ious = box_iou(boxes[top], boxes[remaining])[0]
        members = [remaining[i] for i in np.flatnonzero(ious > iou_threshold)]
        if top not in members:
            members.append(top)
        w = scores[members][:, None]
        box = (boxes[members] * w).sum(0) / w.sum()
        pts = (points[members] * w[:, :, None]).sum(0) / w.sum()
        out.append((box, float(scores[top]), pts))
        remaining = [r for r in remaining if r not in members]
    return out
