"""Resumable batch scanning: a results store (SQLite), pure stages shared by the local and
the Ray engine, and the ``Scanner``."""

from facetrust.scan.store import FaceRow, FileRecord, FileState, FrameRow, ResultsStore

__all__ = ["FaceRow", "FileRecord", "FileState", "FrameRow", "ResultsStore"]
