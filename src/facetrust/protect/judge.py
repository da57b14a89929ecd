"""The judge: dlib's 128-d face descriptor, a recognizer the attack never sees.

dlib's HOG detector finds the faces, the 68-landmark shape predictor aligns the largest one and
the ResNet descriptor (``dlib_face_recognition_resnet_model_v1``, 99.38 % on LFW) embeds it; two
faces are the same person when their descriptors are closer than 0.6 (dlib's threshold).

The model files come from the ``face-recognition-models`` wheel, located through package
metadata (its module imports ``pkg_resources`` and is not imported). Tight face crops often
defeat the HOG detector, so a second pass runs on the image padded by 50 % of its size.

Counting rule: when dlib finds no face in the *protected* image the descriptor is computed in
the original's face rectangle anyway (``protected_detected`` is then False). This measures what
the cloak does to the descriptor, not just whether it hides the face from one detector, and
is the conservative choice for claims about protection. When dlib finds no face in the
*original*, the judge cannot decide (``match`` is None).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facetrust.errors import InputError, ModelError

__all__ = ["DlibJudge", "JudgeResult", "MATCH_THRESHOLD"]

MATCH_THRESHOLD = 0.6
_DIST = "face-recognition-models"
_SHAPE = "shape_predictor_68_face_landmarks.dat"
_RESNET = "dlib_face_recognition_resnet_model_v1.dat"


def _model_file(name: str) -> Path:
    try:
        dist = importlib.metadata.distribution(_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(f"the judge needs the package {_DIST!r}, which is not installed") from None
    for f in dist.files or []:
        if f.name == name:
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    raise ModelError(f"{name} is missing from the {_DIST!r} package")


@dataclass
class JudgeResult:
    """Whether the judge still recognises the person.

    ``match``: True/False, or None when dlib finds no face in the original.
    ``distance``: descriptor distance (None when undecided); match means ``< threshold``.
    """

    match: bool | None
    distance: float | None
    threshold: float
    original_detected: bool
    protected_detected: bool
    message: str

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["distance"] is not None:
            d["distance"] = round(d["distance"], 4)
        return d


class DlibJudge:
    """dlib HOG detector + 68 landmarks + ResNet descriptor, match if distance < ``threshold``.

    Args:
        threshold: match threshold on the Euclidean descriptor distance (dlib: 0.6).
        upsample: times the HOG detector upsamples the image (finds smaller faces, slower).
    """

    def __init__(self, threshold: float = MATCH_THRESHOLD, upsample: int = 1) -> None:
        if not 0.0 < threshold < 2.0:
            raise InputError(f"judge threshold must be in (0, 2), got {threshold}")
        import dlib

        self.threshold = float(threshold)
        self.upsample = int(upsample)
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(_model_file(_SHAPE)))
        self._net = dlib.face_recognition_model_v1(str(_model_file(_RESNET)))
        self._dlib = dlib

    def __repr__(self) -> str:
        return f"DlibJudge(threshold={self.threshold}, upsample={self.upsample})"

    def locate(self, image: np.ndarray):
        """The largest face rectangle dlib finds (a second pass on a padded copy), or None."""
        image = _rgb(image)
        rects = list(self._detector(image, self.upsample))
        if not rects:
            h, w = image.shape[:2]
            p = max(h, w) // 2
            padded = np.pad(image, ((p, p), (p, p), (0, 0)), mode="edge")
            found = list(self._detector(padded, self.upsample))
            rects = [
                self._dlib.rectangle(r.left() - p, r.top() - p, r.right() - p, r.bottom() - p)
                for r in found
            ]
        if not rects:
            return None
        return max(rects, key=lambda r: r.width() * r.height())

    def descriptor(self, image: np.ndarray, rect=None) -> np.ndarray | None:
        """128-d descriptor of the largest face (or of the face in ``rect``); None if no face."""
        image = _rgb(image)
        rect = rect if rect is not None else self.locate(image)
        if rect is None:
            return None
        shape = self._shape(image, rect)
        return np.asarray(self._net.compute_face_descriptor(image, shape), dtype=np.float64)

    def __call__(self, original: np.ndarray, protected: np.ndarray) -> JudgeResult:
        """Does the judge still see the same person in ``protected`` as in ``original``?"""
        rect = self.locate(original)
        if rect is None:
            return JudgeResult(
                None,
                None,
                self.threshold,
                False,
                False,
                "the judge (dlib) found no face in the original; it cannot decide",
            )
        d0 = self.descriptor(original, rect)
        rect_p = self.locate(protected)
        found = rect_p is not None
        d1 = self.descriptor(protected, rect_p if found else rect)
        dist = float(np.linalg.norm(d0 - d1))
        match = dist < self.threshold
        verdict = "still recognised" if match else "not recognised"
        note = "" if found else " (dlib found no face in the protected image; original box used)"
        return JudgeResult(
            match,
            dist,
            self.threshold,
            True,
            found,
            f"judge (dlib): {verdict}, distance {dist:.3f} vs threshold {self.threshold}{note}",
        )


def _rgb(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise InputError(f"the judge needs (H, W, 3) uint8 RGB images, got {a.shape} {a.dtype}")
    return np.ascontiguousarray(a)
