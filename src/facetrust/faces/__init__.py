"""Face detection, landmarks and alignment."""

from facetrust.faces.align import CropContract, FaceAligner
from facetrust.faces.blazeface import BlazeFace
from facetrust.faces.detector import FaceDetector
from facetrust.faces.landmarks import FaceMesh
from facetrust.faces.types import KEYPOINT_NAMES, Face, box_iou

__all__ = [
    "CropContract",
    "Face",
    "FaceAligner",
    "FaceDetector",
    "FaceMesh",
    "BlazeFace",
    "KEYPOINT_NAMES",
    "box_iou",
]
