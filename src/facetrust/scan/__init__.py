"""Resumable batch scanning: a results store (SQLite), pure stages shared by the local and
the Ray engine, and the ``Scanner`` (the local engine). Light to import (no torch until a
model is loaded), so scan worker processes import it too."""

from facetrust.scan.scanner import Scanner, ScanSummary
from facetrust.scan.store import FaceRow, FileRecord, FileState, FrameRow, ResultsStore

__all__ = [
    "FaceRow",
    "FileRecord",
    "FileState",
    "FrameRow",
    "ResultsStore",
    "ScanSummary",
    "Scanner",
]
