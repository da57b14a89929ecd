"""Feathered face masks: where the cloak and the warp are allowed to change pixels.

A face's mask is the convex hull of its 468 FaceMesh landmarks (or an ellipse in its box when
landmarks are missing), dilated by ``sigma`` and blurred with a Gaussian of the same ``sigma``
(``feather`` x the face side): 1 on the face, falling smoothly to exactly 0 a few ``sigma``
outside it (the blur kernel is finite), so no seam shows where the cloak ends.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from facetrust.faces import Face

__all__ = ["Roi", "face_mask", "faces_mask"]

Roi = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), in image pixels


def _face_points(face: Face) -> np.ndarray:
    if face.landmarks is not None and len(face.landmarks) >= 3:
        return np.asarray(face.landmarks, dtype=np.float64)[:, :2]
    x1, y1, x2, y2 = face.box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    # BlazeFace boxes are tight around eyes-mouth; the ellipse reaches the forehead and chin
    return np.stack([cx + 0.55 * (x2 - x1) * np.cos(t), cy + 0.6 * (y2 - y1) * np.sin(t)], 1)


def face_mask(shape: tuple[int, int], face: Face, feather: float = 0.05) -> tuple[np.ndarray, Roi]:
    """Feathered mask of one face.

    Args:
        shape: image ``(H, W)``.
        face: the face (landmarks used when present).
        feather: Gaussian sigma as a fraction of the face side.
    Returns:
        ``(mask, roi)``: ``mask`` is float32 in [0, 1] of shape ``(y1 - y0, x1 - x0)``, covering
        the region ``roi = (x0, y0, x1, y1)`` of the image; it is 0 everywhere outside ``roi``.
    """
    h, w = shape
    pts = _face_points(face)
    side = max(face.width, face.height, 1.0)
    sigma = max(0.5, feather * side)
    reach = int(math.ceil(4 * sigma)) + 2
    x0 = max(0, int(np.floor(pts[:, 0].min())) - reach)
    y0 = max(0, int(np.floor(pts[:, 1].min())) - reach)
    x1 = min(w, int(np.ceil(pts[:, 0].max())) + reach + 1)
    y1 = min(h, int(np.ceil(pts[:, 1].max())) + reach + 1)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0), np.float32), (0, 0, 0, 0)
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    hull = cv2.convexHull(np.round(pts - [x0, y0]).astype(np.int32))
    cv2.fillConvexPoly(canvas, hull, 255)
    r = max(1, int(round(sigma)))
    canvas = cv2.dilate(canvas, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
    k = 2 * int(math.ceil(3 * sigma)) + 1
    mask = cv2.GaussianBlur(
        canvas.astype(np.float32) / 255.0, (k, k), sigma, borderType=cv2.BORDER_CONSTANT
    )
    mask[mask < 1e-3] = 0.0
    return np.clip(mask, 0.0, 1.0), (x0, y0, x1, y1)


def faces_mask(shape: tuple[int, int], faces: list[Face], feather: float = 0.05) -> np.ndarray:
    """Union (pixel-wise max) of the faces' masks as a full ``(H, W)`` float32 array."""
    out = np.zeros(shape, np.float32)
    for f in faces:
        m, (x0, y0, x1, y1) = face_mask(shape, f, feather)
        if m.size:
            np.maximum(out[y0:y1, x0:x1], m, out=out[y0:y1, x0:x1])
    return out
