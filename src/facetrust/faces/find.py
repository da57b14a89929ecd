"""Faces of media files as the ``Detector`` sees them: images and sampled video frames decoded
within the settings' limits, faces found by the detector the ``Detector`` builds and cut by a
crop contract's aligner. Light to import (no torch), so scan workers use it too."""

from __future__ import annotations

import os

import numpy as np

from facetrust.config import Settings
from facetrust.faces.align import FaceAligner
from facetrust.faces.detector import FaceDetector
from facetrust.faces.types import Face
from facetrust.media import ImageLimits, VideoFrame, VideoInfo, load_image, read_video_frames

__all__ = ["face_detector_for", "find_faces", "read_image", "read_video"]


def face_detector_for(settings: Settings, threads: int | None = None) -> FaceDetector:
    """The face detector of a ``Detector`` with these settings (landmarks on); ``threads``
    overrides the settings' thread count."""
    return FaceDetector(
        min_score=settings.face_min_score,
        landmarks=True,
        threads=settings.threads if threads is None else threads,
    )


def find_faces(detector: FaceDetector, aligner: FaceAligner, image: np.ndarray) -> list[Face]:
    """The faces of an RGB image, best first, each with its aligned crop in ``face.crop``."""
    faces = detector(image)
    for f in faces:
        f.crop = aligner(image, f)
    return faces


def read_image(source, settings: Settings) -> np.ndarray:
    """Decode an image (path, bytes or array) within the settings' size limits."""
    return load_image(source, ImageLimits(settings.max_image_pixels, settings.max_file_bytes))


def read_video(
    source: str | os.PathLike | bytes, settings: Settings, *, frames: int, fps: float | None
) -> tuple[VideoInfo, list[VideoFrame]]:
    """Decode a video's sampled frames (``frames`` evenly, or at ``fps``) within the settings'
    limits."""
    return read_video_frames(
        source,
        num_frames=frames,
        fps=fps,
        max_seconds=settings.max_video_seconds,
        max_bytes=settings.max_video_bytes,
    )
