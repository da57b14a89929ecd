"""The stages of a scan, shared by the local engine and the Ray engine.

``probe`` (stat, content hash, kind by content) -> ``Preparer`` (decode, find faces, cut
aligned crops: CPU work, in worker processes) -> ``ScanModel.score`` (one batched forward pass
over the faces of many files, then each file's verdict by the ``Detector``'s own image and video
aggregation) -> :class:`~facetrust.scan.store.FileRecord` rows for the store.

Inputs and outputs are plain picklable objects, so each stage can run in another process.
A bad file never raises out of a stage: it becomes a ``status="error"`` record with a one-line
message; a file without a face becomes ``status="no_face"`` with no probability.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facetrust.config import Settings
from facetrust.errors import FacetrustError, one_line
from facetrust.faces import Face
from facetrust.faces.align import CropContract
from facetrust.faces.find import face_detector_for, find_faces, read_image, read_video
from facetrust.media import VideoFrame, VideoInfo
from facetrust.media.budget import WorkBudget, use_budget
from facetrust.media.sniff import HEAD_BYTES, open_regular_file, sniff_kind
from facetrust.scan.store import FaceRow, FileRecord, FrameRow

__all__ = [
    "FileInfo",
    "Prepared",
    "Preparer",
    "ScanModel",
    "duplicate_record",
    "error_record",
    "probe",
    "thumbnail",
]

THUMBNAIL_SIDE = 96


@dataclass(frozen=True)
class FileInfo:
    """What a file is: absolute path, size, mtime (seconds), content SHA-256, kind by content
    (``image``, ``video`` or None when the first bytes match neither)."""

    path: str
    size: int
    mtime: float
    sha256: str
    kind: str | None


def file_path(path: str | os.PathLike) -> str:
    """The path a file is stored under: absolute (not resolving links), as text."""
    return os.path.abspath(os.fspath(path))


def probe(path: str | os.PathLike) -> FileInfo:
    """Stat, hash (SHA-256 of the content) and sniff a file; ``MediaError`` (one line) for a
    missing, unreadable or non-regular file."""
    with open_regular_file(path) as f:
        st = os.fstat(f.fileno())
        h = hashlib.sha256()
        head = b""
        while block := f.read(1 << 20):
            if not head:
                head = block[:HEAD_BYTES]
            h.update(block)
    return FileInfo(
        file_path(path), int(st.st_size), float(st.st_mtime), h.hexdigest(), sniff_kind(head)
    )


def thumbnail(crop: np.ndarray, side: int = THUMBNAIL_SIDE, quality: int = 80) -> bytes:
    """A small JPEG of an aligned RGB crop, for the report."""
    import cv2

    small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB image
        raise FacetrustError("cannot encode a thumbnail")
    return buf.tobytes()


@dataclass
class Prepared:
    """A file decoded and its faces found: what the scoring stage needs.

    Images: ``faces``. Videos: ``frames`` (index and time only; the pixels are dropped) and
    ``per_frame`` (the faces of each sampled frame). Every face carries its aligned crop;
    ``thumbnails`` are in :meth:`crops` order. ``error`` is set instead when the file failed.
    """

    info: FileInfo
    kind: str | None = None
    width: int | None = None
    height: int | None = None
    faces: list[Face] = field(default_factory=list)
    video: VideoInfo | None = None
    frames: list[VideoFrame] = field(default_factory=list)
    per_frame: list[list[Face]] = field(default_factory=list)
    thumbnails: list[bytes] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time of the process that prepared it, for this file
    error: str | None = None

    def face_lists(self) -> list[list[Face]]:
        return [self.faces] if self.kind == "image" else self.per_frame

    def crops(self) -> list[np.ndarray]:
        """The aligned crops of every face, images' faces or videos' faces frame by frame."""
        return [f.crop for faces in self.face_lists() for f in faces]

    @property
    def n_crops(self) -> int:
        return sum(len(faces) for faces in self.face_lists())


class Preparer:
    """Decode files and find their faces, as the ``Detector`` does (same limits, face detector,
    alignment and crop contract). Build one per worker process.

    Args:
        contract: the checkpoint's crop contract (``ScanModel.contract``).
        settings: limits and face-detector settings.
        frames: frames sampled per video (default: the settings'); ``fps`` samples at a rate.
        threads: CPU threads of the face models in this process.
        face_detector: reuse a ``FaceDetector`` (the scoring process's own, in-process mode).
    """

    def __init__(
        self,
        contract: CropContract,
        settings: Settings | None = None,
        *,
        frames: int | None = None,
        fps: float | None = None,
        threads: int | None = 1,
        face_detector: Any = None,
    ) -> None:
        self.settings = settings or Settings()
        self.contract = contract
        self.frames = frames or self.settings.video_frames
        self.fps = fps
        self.faces = face_detector or face_detector_for(self.settings, threads=threads)
        self.aligner = contract.aligner()

    def __repr__(self) -> str:
        return f"Preparer(crops={self.contract.describe()}, frames={self.frames}, fps={self.fps})"

    def __call__(self, info: FileInfo) -> Prepared:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            with use_budget(WorkBudget.from_settings(self.settings)):
                out = self._prepare(info)
        except FacetrustError as e:
            out = Prepared(info=info, kind=info.kind, error=one_line(e))
        except Exception as e:  # one broken file must not stop a scan; it is recorded
            out = Prepared(
                info=info,
                kind=info.kind,
                error=one_line(f"internal error: {type(e).__name__}: {e}"),
            )
        out.seconds = time.perf_counter() - t0
        out.cpu_seconds = time.process_time() - c0
        return out

    def _prepare(self, info: FileInfo) -> Prepared:
        if info.kind == "video":
            video, frames = read_video(info.path, self.settings, frames=self.frames, fps=self.fps)
            per_frame = [find_faces(self.faces, self.aligner, fr.image) for fr in frames]
            empty = np.zeros((0, 0, 3), np.uint8)
            out = Prepared(
                info=info,
                kind="video",
                width=video.width,
                height=video.height,
                video=video,
                frames=[VideoFrame(fr.index, fr.time_s, empty) for fr in frames],
                per_frame=per_frame,
            )
        else:  # images, and unrecognised content (the image decoder says precisely why)
            image = read_image(info.path, self.settings)
            out = Prepared(
                info=info,
                kind="image",
                width=int(image.shape[1]),
                height=int(image.shape[0]),
                faces=find_faces(self.faces, self.aligner, image),
            )
        out.thumbnails = [thumbnail(c) for c in out.crops()]
        return out


class ScanModel:
    """The scoring stage: a ``Detector`` (provenance off) whose ``FaceScorer`` scores the faces
    of many files in one batched call, and whose image and video aggregation gives each file's
    verdict.

    Args:
        model: checkpoint path or shipped model name (default: the settings', else the default).
        device, batch_size, frames, fps, settings: as for ``Detector``.
        detector_kwargs: further ``Detector`` arguments (e.g. a runtime, where supported).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str | None = None,
        batch_size: int = 32,
        frames: int | None = None,
        fps: float | None = None,
        settings: Settings | None = None,
        **detector_kwargs: Any,
    ) -> None:
        from facetrust.detect.pipeline import Detector

        self.detector = Detector(
            model,
            device=device,
            frames=frames,
            fps=fps,
            batch_size=batch_size,
            settings=settings,
            provenance=False,
            **detector_kwargs,
        )
        self.name = self.detector.model_name
        self.sha256 = self.detector.model_sha256
        self.contract = self.detector.contract
        self.threshold = self.detector.threshold

    def __repr__(self) -> str:
        return f"ScanModel({self.detector!r})"

    def error(self, info: FileInfo | None, path: str, message: str) -> FileRecord:
        return error_record(path, message, self.name, self.sha256, info)

    def score(self, batch: list[Prepared]) -> list[FileRecord]:
        """Records for prepared files: every face of the batch scored in one call (the
        scorer's own batch size splits it), then each file's verdict."""
        t0 = time.perf_counter()
        good = [p for p in batch if p.error is None]
        crops = [c for p in good for c in p.crops()]
        scores = self.detector.scorer(crops)
        per_crop = (time.perf_counter() - t0) / max(len(crops), 1)
        out: list[FileRecord] = []
        k = 0
        for p in batch:
            if p.error is not None:
                out.append(self.error(p.info, p.info.path, p.error))
                continue
            n = p.n_crops
            out.append(self._record(p, _slice(scores, k, k + n), p.seconds + n * per_crop))
            k += n
        return out

    def _record(self, p: Prepared, scores: Any, seconds: float) -> FileRecord:
        det = self.detector
        if p.kind == "image":
            result = det.image_result(
                p.faces, scores, path=p.info.path, width=p.width, height=p.height, t0=0.0
            )
            faces = [
                FaceRow(
                    face_index=i,
                    box=tuple(r.box),
                    det_score=r.det_score,
                    fake_probability=r.fake_probability,
                    label=r.label,
                    experts=r.experts,
                    thumbnail=p.thumbnails[i],
                )
                for i, r in enumerate(result.faces)
            ]
            frames: list[FrameRow] = []
        else:
            from facetrust.detect.pipeline import label_for, video_tracks

            result = det.video_result(
                p.video, p.frames, p.per_frame, scores, path=p.info.path, t0=0.0
            )
            track_of = {m: t.id for t in video_tracks(p.per_frame) for m in t.members}
            experts = scores.expert_probabilities() or [None] * len(scores)
            faces, k = [], 0
            for pos, (fr, found) in enumerate(zip(p.frames, p.per_frame, strict=True)):
                for i, face in enumerate(found):
                    prob = float(scores.probability[k])
                    faces.append(
                        FaceRow(
                            face_index=i,
                            frame_index=fr.index,
                            track_id=track_of.get((pos, i)),
                            box=tuple(float(v) for v in face.box),
                            det_score=float(face.score),
                            fake_probability=prob,
                            label=label_for(prob, det.threshold, det.uncertain),
                            experts=experts[k],
                            thumbnail=p.thumbnails[k],
                        )
                    )
                    k += 1
            frames = [
                FrameRow(f.frame_index, f.time_s, f.fake_probability, f.label, f.num_faces)
                for f in result.frame_predictions or []
            ]
        return FileRecord(
            path=p.info.path,
            model=self.name,
            model_sha256=self.sha256,
            status="no_face" if result.fake_probability is None else "ok",
            size=p.info.size,
            mtime=p.info.mtime,
            sha256=p.info.sha256,
            kind=p.kind,
            fake_probability=result.fake_probability,
            label=result.label,
            threshold=result.threshold,
            seconds=seconds,
            width=result.width,
            height=result.height,
            frames_analyzed=result.frames_analyzed,
            faces=faces,
            frames=frames,
        )


def _slice(scores: Any, a: int, b: int) -> Any:
    """Faces ``a:b`` of a ``FaceScores``."""
    from facetrust.detect.scoring import FaceScores

    return FaceScores(
        list(scores.inputs), scores.logits[a:b], scores.fused[a:b], scores.probability[a:b]
    )


def error_record(
    path: str, message: str, model: str, model_sha256: str, info: FileInfo | None = None
) -> FileRecord:
    """A ``status="error"`` record with a one-line message."""
    return FileRecord(
        path=path,
        model=model,
        model_sha256=model_sha256,
        status="error",
        error=one_line(message),
        size=None if info is None else info.size,
        mtime=None if info is None else info.mtime,
        sha256=None if info is None else info.sha256,
        kind=None if info is None else info.kind,
    )


def duplicate_record(info: FileInfo, original: dict[str, Any]) -> FileRecord:
    """A record for ``info`` whose content is that of the stored row ``original`` (a ``files``
    row as a dict): its verdict is copied and ``duplicate_of`` names it; no faces or frames."""
    return FileRecord(
        path=info.path,
        model=original["model"],
        model_sha256=original["model_sha256"],
        status=original["status"],
        size=info.size,
        mtime=info.mtime,
        sha256=info.sha256,
        kind=original["kind"],
        fake_probability=original["fake_probability"],
        label=original["label"],
        threshold=original["threshold"],
        seconds=0.0,
        width=original["width"],
        height=original["height"],
        frames_analyzed=original["frames_analyzed"],
        error=original["error"],
        duplicate_of=int(original["id"]),
        n_faces_copied=original["n_faces"],
    )
