"""Find every face in an image: multi-scale tiled BlazeFace, cross-tile NMS, FaceMesh landmarks."""

from __future__ import annotations

import threading

import numpy as np

from facetrust.faces.blazeface import BlazeFace
from facetrust.faces.landmarks import FaceMesh
from facetrust.faces.types import Face, box_iou, weighted_nms
from facetrust.media.budget import check_deadline, current_budget

Window = tuple[float, float, float]


def plan_windows(
    width: int,
    height: int,
    min_face: int,
    model_size: int = 192,
    max_windows: int | None = None,
) -> list[Window]:
    """Square windows ``(x0, y0, side)`` that together see faces from ``min_face`` pixels up.

    Level 0 is the whole image (letterboxed). Each further level halves the window side and
    tiles the image with 25 % overlap, until a window would be smaller than the side at which a
    ``min_face`` face still covers ~1/16 of the model input (BlazeFace full range finds faces
    down to ~10 px of its 192 px input). Faces larger than a level's overlap are whole in a
    coarser level.

    ``max_windows`` caps the plan (default: the work budget's ``max_windows``): a level that
    would take the total past it is left out with every finer one, so the smallest face found
    grows instead of the work. A level's window count is computed before its windows are made,
    so even a 1 x 4,000,000 image plans in microseconds.
    """
    if max_windows is None:
        max_windows = current_budget().max_windows
    if max_windows < 1:
        raise ValueError("max_windows must be at least 1")
    long_side = float(max(width, height))
    windows: list[Window] = [((width - long_side) / 2, (height - long_side) / 2, long_side)]
    smallest = max(min_face * model_size / 12.0, model_size * 0.75)
    side = long_side / 2
    while side >= smallest:
        stride = side * 0.75
        nx, ny = _count(width, side, stride), _count(height, side, stride)
        if len(windows) + nx * ny > max_windows:
            break
        xs = _starts(width, side, stride)
        ys = _starts(height, side, stride)
        windows += [(x, y, side) for y in ys for x in xs]
        side /= 2
    return windows


def _count(length: float, side: float, stride: float) -> int:
    if side >= length:
        return 1
    return int(np.ceil((length - side) / stride)) + 1


def _starts(length: float, side: float, stride: float) -> list[float]:
    if side >= length:
        return [(length - side) / 2]
    return list(np.linspace(0, length - side, _count(length, side, stride)))


class FaceDetector:
    """Detect faces with keypoints and (optionally) 468 landmarks.

    Args:
        min_score: BlazeFace score threshold.
        min_face: smallest face side, in pixels, the tiling pass looks for.
        landmarks: attach FaceMesh's 468 landmarks to each face.
        verify: keep only faces that FaceMesh also scores as a face (presence > ``verify_score``);
            this removes BlazeFace's false positives on bodies, furniture and texture.
        max_faces: keep at most this many faces (largest score first).
        threads: CPU threads for the LiteRT interpreters.

    Tight face crops, where the face fills the frame (as in most deepfake data sets), are found
    by an extra pass on the image padded to twice its size with the short-range model.

    Thread-safe: the LiteRT interpreters are not, so calls on one instance run one at a time.
    The tiling is capped by the work budget's ``max_windows`` and the budget's deadline is
    checked between windows (:mod:`facetrust.media.budget`).
    """

    def __init__(
        self,
        min_score: float = 0.5,
        min_face: int = 20,
        landmarks: bool = True,
        verify: bool = True,
        verify_score: float = 0.5,
        max_faces: int = 64,
        nms_iou: float = 0.3,
        threads: int | None = None,
    ) -> None:
        if not 0.0 < min_score < 1.0:
            raise ValueError("min_score must be in (0, 1)")
        if min_face < 4:
            raise ValueError("min_face must be at least 4 pixels")
        self.min_score = min_score
        self.min_face = min_face
        self.landmarks = landmarks
        self.verify = verify
        self.verify_score = verify_score
        self.max_faces = max_faces
        self.nms_iou = nms_iou
        self._full = BlazeFace("full", min_score, threads)
        self._short = BlazeFace("short", min_score, threads)
        self._mesh = FaceMesh(threads) if (landmarks or verify) else None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"FaceDetector(min_score={self.min_score}, min_face={self.min_face}, "
            f"landmarks={self.landmarks}, verify={self.verify}, max_faces={self.max_faces})"
        )

    def __call__(self, image: np.ndarray) -> list[Face]:
        """Faces in ``image`` (H, W, 3 uint8 RGB), best score first."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError("image must be an (H, W, 3) uint8 RGB array")
        with self._lock:
            return self._find(image)

    def _find(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        boxes, scores, kps = [], [], []

        def add(found: tuple[np.ndarray, np.ndarray, np.ndarray], window: Window | None) -> None:
            b, s, k = found
            if window is not None and len(b):
                keep = _inside_window(b, window, w, h)
                b, s, k = b[keep], s[keep], k[keep]
            boxes.append(b)
            scores.append(s)
            kps.append(k)

        for i, win in enumerate(plan_windows(w, h, self.min_face, self._full.size)):
            if i % 16 == 0:
                check_deadline("finding faces")
            add(self._full(image, win), None if i == 0 else win)
        # tight crops: pad so the face covers about half the window
        side = 2.0 * max(h, w)
        pad_window = ((w - side) / 2, (h - side) / 2, side)
        add(self._short(image, pad_window), None)
        add(self._full(image, pad_window), None)

        b = np.concatenate(boxes)
        if len(b) == 0:
            return []
        merged = weighted_nms(b, np.concatenate(scores), np.concatenate(kps), self.nms_iou)
        faces = []
        for n, (box, score, pts) in enumerate(merged):
            if n % 16 == 15:
                check_deadline("finding faces")
            face = Face(box=_clip_box(box, w, h), score=score, keypoints=pts)
            if self._mesh is not None:
                landmarks, presence = self._mesh(image, face)
                if self.verify and presence < self.verify_score and _touches_border(face, w, h):
                    # a face cut by the frame (tight crops): black fill can hide it from the mesh
                    alt, alt_presence = self._mesh(image, face, border="replicate")
                    if alt_presence > presence:
                        landmarks, presence = alt, alt_presence
                if self.verify and presence < self.verify_score:
                    continue
                if self.landmarks:
                    face.landmarks = landmarks
            faces.append(face)
            if len(faces) == self.max_faces:
                break
        return faces


def _inside_window(boxes: np.ndarray, window: Window, w: int, h: int) -> np.ndarray:
    """Drop boxes cut by a window edge that lies inside the image (they are whole elsewhere)."""
    x0, y0, side = window
    x1, y1 = x0 + side, y0 + side
    tol = 0.01 * side
    cut_left = (boxes[:, 0] <= x0 + tol) & (x0 > 0)
    cut_top = (boxes[:, 1] <= y0 + tol) & (y0 > 0)
    cut_right = (boxes[:, 2] >= x1 - tol) & (x1 < w)
    cut_bottom = (boxes[:, 3] >= y1 - tol) & (y1 < h)
    return ~(cut_left | cut_top | cut_right | cut_bottom)


def _touches_border(face: Face, w: int, h: int) -> bool:
    x1, y1, x2, y2 = face.box
    side = max(face.width, face.height) * 0.25  # the mesh ROI reaches ~25 % beyond the box
    return x1 - side < 0 or y1 - side < 0 or x2 + side > w or y2 + side > h


def _clip_box(box: np.ndarray, w: int, h: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return (max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2))


__all__ = ["FaceDetector", "plan_windows", "box_iou"]
