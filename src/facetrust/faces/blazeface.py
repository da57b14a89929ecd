"""BlazeFace face detection (MediaPipe short- and full-range models) on one square window."""

from __future__ import annotations

import cv2
import numpy as np

from facetrust.faces._tflite import TfliteModel

# name -> (file, input size, [(stride, anchors per cell)])
_VARIANTS = {
    "full": ("face_detection_full_range.tflite", 192, [(4, 1)]),
    "short": ("face_detection_short_range.tflite", 128, [(8, 2), (16, 6)]),
}


def _anchors(size: int, layers: list[tuple[int, int]]) -> np.ndarray:
    out = []
    for stride, per_cell in layers:
        n = int(np.ceil(size / stride))
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        centers = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(centers, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


class BlazeFace:
    """Run one BlazeFace variant on a square window of an image.

    ``__call__(image, window)`` returns raw (pre-NMS) detections above ``min_score`` as
    ``boxes (N, 4)``, ``scores (N,)``, ``keypoints (N, 6, 2)``, all in image pixels.
    """

    def __init__(self, variant: str = "full", min_score: float = 0.5, threads: int | None = None):
        if variant not in _VARIANTS:
            raise ValueError(f"unknown BlazeFace variant {variant!r}; use one of {list(_VARIANTS)}")
        file, size, layers = _VARIANTS[variant]
        self.variant = variant
        self.min_score = min_score
        self._model = TfliteModel(file, threads)
        self.size = size
        self._anchors = _anchors(size, layers)

    def __repr__(self) -> str:
        return f"BlazeFace(variant={self.variant!r}, min_score={self.min_score})"

    def __call__(
        self, image: np.ndarray, window: tuple[float, float, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Detect faces in the square ``window = (x0, y0, side)`` of ``image`` (None: all of it).

        Parts of the window outside the image are black, as in MediaPipe's letterbox.
        """
        h, w = image.shape[:2]
        if window is None:
            side = float(max(h, w))
            window = ((w - side) / 2, (h - side) / 2, side)
        x0, y0, side = window
        scale = self.size / side
        # affine map from image pixels to model input pixels
        m = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], dtype=np.float64)
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        patch = cv2.warpAffine(
            image, m, (self.size, self.size), flags=interp, borderMode=cv2.BORDER_CONSTANT
        )
        x = patch.astype(np.float32)[None] / 127.5 - 1.0
        raw_boxes, raw_scores = self._model(x)
        raw_boxes = raw_boxes.reshape(-1, 16)
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.reshape(-1), -80, 80)))
        keep = np.flatnonzero(scores > self.min_score)
        if keep.size == 0:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 6, 2))
        raw = raw_boxes[keep].reshape(-1, 8, 2) / self.size
        anchors = self._anchors[keep][:, None, :]
        centers = raw[:, 0:1] + anchors
        sizes = raw[:, 1]
        kps = raw[:, 2:] + anchors
        boxes = np.concatenate([centers[:, 0] - sizes / 2, centers[:, 0] + sizes / 2], axis=1)
        # normalised window coordinates -> image pixels
        boxes = boxes * side + np.array([x0, y0, x0, y0])
        kps = kps * side + np.array([x0, y0])
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return boxes[valid], scores[keep][valid], kps[valid]
