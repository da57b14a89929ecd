"""Prepare a training manifest: find labelled media, detect faces, cache aligned crops.

``discover`` (:mod:`facetrust.data.discover`) turns a folder, a CSV file or a facetrust
manifest into labelled rows (one per media file); ``prepare`` decodes each file (images whole,
videos as sampled frames), keeps the largest faces, saves an aligned PNG crop and its
landmarks in a cache and writes one manifest row per face. Re-running is incremental: a file
whose cache record (:mod:`facetrust.data.crop_cache`) is present is not decoded.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facetrust.data.crop_cache import (
    CacheConfig,
    FileRecord,
    cache_file,
    crop_key,
    file_key,
    load_record,
    save_npy,
    save_record,
)
from facetrust.data.discover import _discover, discover
from facetrust.data.manifest import FACE_FIELDS, ManifestRow, write_manifest
from facetrust.errors import InputError, MediaError, one_line
from facetrust.faces.align import ALIGNMENT
from facetrust.files import atomic_write
from facetrust.media.jpeg_quality import estimate_jpeg_quality, image_format_info
from facetrust.progress import ProgressBar

if TYPE_CHECKING:
    from facetrust.faces import FaceDetector

__all__ = ["PrepareResult", "discover", "estimate_jpeg_quality", "prepare"]

# What one bad file may raise while it is decoded, detected and cropped: reported, not fatal.
_FILE_ERRORS: tuple[type[BaseException], ...] = (
    InputError,  # MediaError included
    OSError,
    ValueError,
    RuntimeError,
    MemoryError,
)

# --- per-file work ---------------------------------------------------------------------------


def _decode(path: str, frames_per_video: int) -> tuple[dict, list, bool]:
    """``(info, [(frame_index | None, rgb)], is_video)`` for the file at ``path``."""
    from facetrust.config import Settings
    from facetrust.media import load_image, read_video_frames, sniff_path
    from facetrust.media.image import ImageLimits
    from facetrust.media.sniff import HEAD_BYTES, open_regular_file, read_file_limited, video_format

    settings = Settings()  # the same limits as detection (FACETRUST_* environment variables)
    kind = sniff_path(path)
    if kind is None:
        raise MediaError("not a supported image or video (by content)")
    if kind == "image":
        limits = ImageLimits(settings.max_image_pixels, settings.max_file_bytes)
        data = read_file_limited(path, limits.max_bytes)
        rgb = load_image(data, limits)  # decoded exactly as `facetrust detect` decodes it
        info = image_format_info(data)
        info.update(width=int(rgb.shape[1]), height=int(rgb.shape[0]))
        return info, [(None, rgb)], False
    with open_regular_file(path) as f:
        container = video_format(f.read(HEAD_BYTES))
    vinfo, frames = read_video_frames(
        path,
        num_frames=frames_per_video,
        max_seconds=settings.max_video_seconds,
        max_bytes=settings.max_video_bytes,
    )
    info = {
        "width": vinfo.width,
        "height": vinfo.height,
        "format": (container or "video").upper(),
        "mode": None,
        "jpeg_quality": None,
    }
    return info, [(f.index, f.image) for f in frames], True


def _process_file(path: str, cfg: CacheConfig, detector: Any, aligner: Any) -> FileRecord:
    """Decode, detect, crop and cache one file; never raises for a bad file."""
    from PIL import Image

    from facetrust.faces.align import transform_points

    try:
        st = os.stat(path)
        info, frames, is_video = _decode(path, cfg.frames_per_video)
        faces_out: list[dict[str, Any]] = []
        for frame_index, rgb in frames:
            found = sorted(detector(rgb), key=lambda f: f.width * f.height, reverse=True)
            for j, face in enumerate(found[: cfg.max_faces]):
                key = crop_key(path, st, cfg, frame_index, j)
                crop_path = cache_file(cfg, key, ".png")
                crop = aligner(rgb, face)
                atomic_write(
                    crop_path, lambda p, c=crop: Image.fromarray(c).save(p, "PNG", compress_level=1)
                )
                lm_rel = None
                if face.landmarks is not None:
                    pts = transform_points(face.landmarks[:, :2], aligner.matrix(face))
                    lm_path = cache_file(cfg, key, ".npy")
                    arr = pts.astype(np.float16)
                    atomic_write(lm_path, lambda p, a=arr: save_npy(p, a))
                    lm_rel = lm_path.relative_to(cfg.cache_dir).as_posix()
                faces_out.append(
                    {
                        "frame": frame_index,
                        "face": j,
                        "box": [round(float(v), 1) for v in face.box],
                        "det_score": round(float(face.score), 4),
                        "crop": crop_path.relative_to(cfg.cache_dir).as_posix(),
                        "landmarks": lm_rel,
                    }
                )
    except _FILE_ERRORS as e:
        reason = str(e) if isinstance(e, InputError) else f"{type(e).__name__}: {one_line(e)}"
        return FileRecord(status="failed", reason=reason)
    result = FileRecord(
        status="ok" if faces_out else "no_face",
        reason=None if faces_out else "no face found",
        info=info,
        faces=faces_out,
        video_id=Path(path).with_suffix("").as_posix() if is_video else None,
    )
    try:
        save_record(cfg, file_key(path, st, cfg), result)
    except OSError as e:
        return FileRecord(status="failed", reason=f"cannot write the cache: {one_line(e)}")
    return result


_WORKER: dict[str, Any] = {}


def _worker_init(cfg: CacheConfig, detector_bytes: bytes | None) -> None:
    from facetrust.faces import FaceAligner, FaceDetector

    det = (
        pickle.loads(detector_bytes)
        if detector_bytes is not None
        else FaceDetector(landmarks=True, threads=1)
    )
    aligner = FaceAligner(size=cfg.crop_size, margin=cfg.margin)
    _WORKER.update(cfg=cfg, detector=det, aligner=aligner)


def _worker_run(task: tuple[int, str]) -> tuple[int, FileRecord]:
    i, path = task
    return i, _process_file(path, _WORKER["cfg"], _WORKER["detector"], _WORKER["aligner"])


# --- prepare ---------------------------------------------------------------------------------


@dataclass
class PrepareResult:
    """What :func:`prepare` did.

    Attributes:
        out: the manifest written.
        rows: one row per kept face.
        n_files: media files found (listed, whether they gave faces or not).
        n_faces: rows written (faces kept, over all images and video frames).
        no_face: files in which no face was found.
        failed: ``(path, reason)`` for files that could not be used (unreadable, unclear label).
        cached: files whose faces came from the cache without decoding.
        skipped_path: the ``<out>.skipped.jsonl`` listing no-face and failed files, if any.
    """

    out: Path
    rows: list[ManifestRow]
    n_files: int
    n_faces: int
    no_face: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    cached: int = 0
    skipped_path: Path | None = None

    def summary(self) -> str:
        """One line for a terminal."""
        return (
            f"{self.n_files} files -> {self.n_faces} faces in {self.out} "
            f"({self.cached} from cache, {len(self.no_face)} without a face, "
            f"{len(self.failed)} failed)"
        )


def _detector_tag(detector: Any) -> str:
    from facetrust import __version__

    if detector is None:
        name = "FaceDetector(landmarks=True)"
    else:
        name = getattr(detector, "version", None) or repr(detector)
        if " at 0x" in name:  # a default object repr changes every run: use the class
            name = f"{type(detector).__module__}.{type(detector).__qualname__}"
    return f"facetrust-{__version__}/{name}"


def _stored_path(p: str | Path, base: Path) -> str:
    """``p`` relative to ``base`` when it lies under it, else absolute."""
    p = Path(p).resolve()
    try:
        return p.relative_to(base).as_posix()
    except ValueError:
        return str(p)


def skipped_path_for(out: Path) -> Path:
    """Where :func:`prepare` lists skipped files for a manifest at ``out``."""
    stem = out.stem if out.suffix.lower() in (".jsonl", ".json") else out.name
    return out.with_name(f"{stem}.skipped.jsonl")


def prepare(
    sources: list[str | os.PathLike] | str | os.PathLike,
    out: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    crop_size: int = 256,
    margin: float = 0.2,
    frames_per_video: int = 8,
    max_faces: int = 1,
    source_name: str | None = None,
    detector: FaceDetector | None = None,
    progress: bool = False,
    workers: int = 1,
) -> PrepareResult:
    """Find faces in labelled media and write a manifest with one row per aligned face crop.

    Args:
        sources: folders, CSV files or manifests (see :func:`discover`).
        out: the manifest to write (JSONL; a folder means ``<folder>/manifest.jsonl``).
        cache_dir: where crops, landmarks and per-file records live; default
            ``<out folder>/.facetrust-cache/crops``.
        crop_size, margin: the aligned crop (see :class:`~facetrust.faces.FaceAligner`).
        frames_per_video: frames sampled evenly from each video.
        max_faces: largest faces (by box area) kept per image or frame.
        source_name: ``source`` for rows whose listing does not give one.
        detector: a face detector (default ``FaceDetector(landmarks=True)``, built only when a
            file needs decoding). Its ``version`` attribute, or its repr, is part of the cache key.
        progress: show a progress bar.
        workers: processes decoding in parallel (1 = in this process).

    Each row gets ``crop`` (PNG), ``landmarks`` (``(468, 2)`` float16 .npy in crop pixels),
    ``box`` and ``det_score`` in the original frame, and the original file's ``width``,
    ``height`` (upright), ``format``, ``mode`` and ``jpeg_quality``. Paths under the manifest's
    folder are stored relative to it, others absolute. Files without a face, unreadable files
    and files with an unclear label are listed in the result and in ``<out>.skipped.jsonl``.
    """
    cfg, out_path = _check_args(
        sources, out, cache_dir, crop_size, margin, frames_per_video, max_faces, workers, detector
    )
    base = out_path.parent.resolve()
    src_list = [sources] if isinstance(sources, str | os.PathLike) else list(sources)
    if not src_list:
        raise InputError("no sources given")

    listed: list[ManifestRow] = []
    failed: list[tuple[str, str]] = []
    for s in src_list:
        listing = Path(s) / "manifest.jsonl" if Path(s).is_dir() else Path(s)
        if listing.resolve() == out_path.resolve():
            raise InputError(f"out {out_path} is the source manifest itself: write elsewhere")
        rows, unclear = _discover(Path(s), source_name)
        listed += rows
        failed += unclear
    listed, dupes = _dedupe(listed)
    failed += dupes
    by_path = {r.path: r for r in listed}

    # cache look-up (no decoding) and the work list
    results: dict[int, FileRecord] = {}
    pending: list[tuple[int, str]] = []
    cached = 0
    for i, row in enumerate(listed):
        try:
            st = os.stat(row.path)
        except OSError as e:
            results[i] = FileRecord("failed", f"cannot read {row.path}: {one_line(e.strerror)}")
            continue
        rec = load_record(cfg, file_key(row.path, st, cfg))
        if rec is None:
            pending.append((i, row.path))
        else:
            results[i] = rec
            cached += 1

    for i, res in _run(pending, cfg, detector, workers, progress):
        results[i] = res

    rows_out: list[ManifestRow] = []
    no_face: list[str] = []
    for i, row in enumerate(listed):
        res = results[i]
        if res.status == "failed":
            failed.append((row.path, res.reason or "failed"))
        elif res.status == "no_face":
            no_face.append(row.path)
        for f in res.faces:
            rows_out.append(_face_row(row, res, f, cfg, base))

    out_path = write_manifest(out_path, rows_out)
    skipped = _write_skipped(out_path, by_path, no_face, failed)
    return PrepareResult(
        out=out_path,
        rows=rows_out,
        n_files=len(listed) + sum(1 for p, _ in failed if p not in by_path),
        n_faces=len(rows_out),
        no_face=no_face,
        failed=failed,
        cached=cached,
        skipped_path=skipped,
    )


def _check_args(
    sources: Any,
    out: Any,
    cache_dir: Any,
    crop_size: int,
    margin: float,
    frames_per_video: int,
    max_faces: int,
    workers: int,
    detector: Any,
) -> tuple[CacheConfig, Path]:
    for name, value, low in (
        ("crop_size", crop_size, 8),
        ("frames_per_video", frames_per_video, 1),
        ("max_faces", max_faces, 1),
        ("workers", workers, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"{name} must be an int >= {low}, got {value!r}")
    if not isinstance(margin, int | float) or not 0.0 <= margin <= 2.0:
        raise InputError(f"margin must be between 0 and 2, got {margin!r}")
    out_path = Path(out)
    if out_path.is_dir():
        out_path = out_path / "manifest.jsonl"
    cache = Path(cache_dir) if cache_dir is not None else out_path.parent / ".facetrust-cache/crops"
    cfg = CacheConfig(
        cache_dir=str(cache.resolve()),
        crop_size=crop_size,
        margin=float(margin),
        frames_per_video=frames_per_video,
        max_faces=max_faces,
        det_tag=_detector_tag(detector),
    )
    return cfg, out_path


def _dedupe(rows: list[ManifestRow]) -> tuple[list[ManifestRow], list[tuple[str, str]]]:
    """Keep the first row of each path; a path listed with both labels is left out."""
    first: dict[str, ManifestRow] = {}
    clash: set[str] = set()
    for r in rows:
        if r.path in first:
            if first[r.path].label != r.label:
                clash.add(r.path)
        else:
            first[r.path] = r
    kept = [r for p, r in first.items() if p not in clash]
    return kept, [(p, "listed as both real and fake") for p in sorted(clash)]


def _run(
    pending: list[tuple[int, str]],
    cfg: CacheConfig,
    detector: Any,
    workers: int,
    progress: bool,
) -> Iterator[tuple[int, FileRecord]]:
    if not pending:
        return
    bar = ProgressBar(len(pending), "faces", enabled=progress).__enter__()
    try:
        if workers == 1 or len(pending) == 1:
            from facetrust.faces import FaceAligner, FaceDetector

            det = detector if detector is not None else FaceDetector(landmarks=True)
            aligner = FaceAligner(size=cfg.crop_size, margin=cfg.margin)
            for i, path in pending:
                yield i, _process_file(path, cfg, det, aligner)
                bar.advance()
        else:
            yield from _run_pool(pending, cfg, detector, workers, bar)
    finally:
        bar.__exit__(None, None, None)


def _run_pool(
    pending: list[tuple[int, str]], cfg: CacheConfig, detector: Any, workers: int, bar: Any
) -> Iterator[tuple[int, FileRecord]]:
    import multiprocessing as mp

    det_bytes = None
    if detector is not None:
        try:
            det_bytes = pickle.dumps(detector)
        except (pickle.PicklingError, TypeError, AttributeError):
            raise InputError(
                "workers > 1 needs a picklable detector; pass detector=None to let each worker "
                "build its own"
            ) from None
    ctx = mp.get_context("spawn")  # no fork: detector threads and torch do not survive it
    n = min(workers, len(pending))
    with ctx.Pool(n, initializer=_worker_init, initargs=(cfg, det_bytes)) as pool:
        for i, res in pool.imap_unordered(_worker_run, pending, chunksize=1):
            yield i, res
            bar.advance()


def _face_row(
    row: ManifestRow, res: FileRecord, f: dict[str, Any], cfg: CacheConfig, base: Path
) -> ManifestRow:
    root = Path(cfg.cache_dir)
    data = row.model_dump(exclude=set(FACE_FIELDS))
    data["path"] = _stored_path(row.path, base)
    data.update({k: res.info.get(k) for k in ("width", "height", "format", "mode", "jpeg_quality")})
    data.update(
        frame=f.get("frame"),
        face=f.get("face", 0),
        box=f.get("box"),
        det_score=f.get("det_score"),
        crop=_stored_path(root / f["crop"], base),
        crop_size=cfg.crop_size,
        crop_margin=cfg.margin,
        crop_alignment=ALIGNMENT,
        landmarks=_stored_path(root / f["landmarks"], base) if f.get("landmarks") else None,
    )
    if res.video_id is not None and data.get("video_id") is None:
        data["video_id"] = _stored_path(res.video_id, base)
    return ManifestRow.model_validate(data)


def _write_skipped(
    out: Path,
    by_path: dict[str, ManifestRow],
    no_face: list[str],
    failed: list[tuple[str, str]],
) -> Path | None:
    path = skipped_path_for(out)
    entries = [(p, "no face found") for p in no_face] + list(failed)
    if not entries:
        path.unlink(missing_ok=True)
        return None
    lines = []
    for p, reason in entries:
        row = by_path.get(p)
        rec = {"path": p, "reason": reason}
        if row is not None:
            rec.update(label=row.label, source=row.source)
        lines.append(json.dumps(rec))
    text = "\n".join(lines) + "\n"
    atomic_write(path, lambda q: q.write_text(text, encoding="utf-8"))
    return path
