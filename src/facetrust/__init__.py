"""facetrust: find deepfaked faces in images and video, with calibrated probabilities."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("facetrust")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = ["Detector", "FaceDetector", "FaceAligner", "Face", "Settings", "__version__"]


def __getattr__(name: str):  # lazy: importing facetrust stays cheap (no torch at import)
    if name == "Detector":
        from facetrust.detect import Detector

        return Detector
    if name in {"FaceDetector", "FaceAligner", "Face"}:
        from facetrust import faces

        return getattr(faces, name)
    if name == "Settings":
        from facetrust.config import Settings

        return Settings
    raise AttributeError(f"module 'facetrust' has no attribute {name!r}")
