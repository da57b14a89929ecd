"""Deepfake detection: the ``Detector`` pipeline, calibration, video aggregation."""

from facetrust.detect.pipeline import Detector
from facetrust.detect.results import FaceResult, FileResult, FramePrediction

__all__ = ["Detector", "FaceResult", "FileResult", "FramePrediction"]
