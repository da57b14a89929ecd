"""Where the cloak works: each face's square crop, its masks, and the window around the faces.

For each face the attack works on a square crop around it (``margin`` of the face side on each
side), resampled to ``min(work_size, side)`` pixels; its change comes back to full resolution by
bilinear interpolation and is multiplied by the full-resolution feathered mask (:mod:`.mask`).
Everything runs inside a window around the faces (their crops and masks, grown by 16 pixels and
aligned to the 16-pixel JPEG grid), so memory and time do not grow with the photo's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from facetrust.faces import Face
from facetrust.protect.mask import face_mask

__all__ = [
    "Region",
    "add_back",
    "crop_side",
    "extract",
    "regions_for",
    "shift_face",
    "window_for",
]

#: The face region (what the budget measures): where the feathered mask is at least this.
REGION_LEVEL = 0.5


@dataclass
class Region:
    """A square crop ``(x0, y0, side)`` to attack and its full-resolution feathered mask."""

    x0: int
    y0: int
    side: int
    mask: np.ndarray  # (H, W) float32 in [0, 1], full resolution

    @property
    def face(self) -> np.ndarray:
        """``(H, W)`` bool: the face region the budget is measured on."""
        return self.mask >= REGION_LEVEL


def crop_side(face: Face, margin: float) -> int:
    """Side of the square crop around ``face``: the face side plus ``margin`` on each side."""
    return max(16, int(math.ceil(max(face.width, face.height) * (1 + 2 * margin))))


def window_for(
    shape: tuple[int, int], faces: list[Face], margin: float, feather: float, whole: bool
) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``: the part of the image that can change, plus a margin.

    The union of the faces' crop squares and mask regions, grown by 16 pixels and aligned to
    the 16-pixel JPEG grid; the whole image when ``whole``.
    """
    h, w = shape
    if whole:
        return 0, 0, w, h
    boxes = []
    for f in faces:
        side = crop_side(f, margin)
        cx, cy = f.center
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        boxes.append((x0, y0, x0 + side, y0 + side))
        _, roi = face_mask(shape, f, feather)
        if roi[2] > roi[0]:
            boxes.append(roi)
    b = np.array(boxes)
    x0 = max(0, (int(b[:, 0].min()) - 16) // 16 * 16)
    y0 = max(0, (int(b[:, 1].min()) - 16) // 16 * 16)
    x1 = min(w, -(-(int(b[:, 2].max()) + 16) // 16) * 16)
    y1 = min(h, -(-(int(b[:, 3].max()) + 16) // 16) * 16)
    return x0, y0, x1, y1


def regions_for(
    shape: tuple[int, int], faces: list[Face], margin: float, feather: float, whole: bool
) -> list[Region]:
    """One :class:`Region` per face (one square over the whole image when ``whole``)."""
    h, w = shape
    if whole:
        side = max(h, w)
        return [Region((w - side) // 2, (h - side) // 2, side, np.ones((h, w), np.float32))]
    out = []
    for f in faces:
        m, (x0, y0, x1, y1) = face_mask(shape, f, feather)
        full = np.zeros((h, w), np.float32)
        full[y0:y1, x0:x1] = m
        side = crop_side(f, margin)
        cx, cy = f.center
        out.append(Region(int(round(cx - side / 2)), int(round(cy - side / 2)), side, full))
    return out


def shift_face(face: Face, dx: float, dy: float) -> Face:
    """``face`` moved by ``(dx, dy)`` pixels (into a window's coordinates)."""
    x1, y1, x2, y2 = face.box
    lm = None if face.landmarks is None else face.landmarks + np.array([dx, dy, 0.0])
    return replace(
        face,
        box=(x1 + dx, y1 + dy, x2 + dx, y2 + dy),
        keypoints=face.keypoints + np.array([dx, dy]),
        landmarks=lm,
        crop=None,
    )


def _bounds(r: Region, h: int, w: int) -> tuple[int, int, int, int]:
    """The part of region ``r`` inside the image: ``xa, xb, ya, yb``."""
    return max(0, r.x0), min(w, r.x0 + r.side), max(0, r.y0), min(h, r.y0 + r.side)


def extract(image: np.ndarray, r: Region, size: int) -> np.ndarray:
    """Square crop of region ``r`` (edges replicated outside the image), resized to ``size``
    (area interpolation); float32 ``(size, size, C)``."""
    h, w = image.shape[:2]
    xa, xb, ya, yb = _bounds(r, h, w)
    patch = image[ya:yb, xa:xb]
    pads = ((ya - r.y0, r.y0 + r.side - yb), (xa - r.x0, r.x0 + r.side - xb), (0, 0))
    patch = np.pad(patch, pads[: image.ndim], mode="edge")
    if r.side != size:
        patch = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    if patch.ndim == 2:
        patch = patch[..., None]
    return patch.astype(np.float32)


def add_back(delta: np.ndarray, r: Region, shape: tuple[int, int]) -> np.ndarray:
    """``delta`` ``(S, S, 3)`` enlarged to the region (bilinear) and multiplied by its
    full-resolution mask: a ``(H, W, 3)`` float32 array, zero outside the region."""
    h, w = shape
    out = np.zeros((h, w, 3), np.float32)
    if delta.shape[0] != r.side:
        delta = cv2.resize(delta, (r.side, r.side), interpolation=cv2.INTER_LINEAR)
    xa, xb, ya, yb = _bounds(r, h, w)
    part = delta[ya - r.y0 : yb - r.y0, xa - r.x0 : xb - r.x0]
    out[ya:yb, xa:xb] = r.mask[ya:yb, xa:xb, None] * part
    return out
