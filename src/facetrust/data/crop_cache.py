"""The crop cache of ``prepare``: per-file records keyed by path, size, mtime and the crop
settings, so a re-run decodes only what changed; crops are PNG, landmarks float16 ``.npy``."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from facetrust.files import atomic_write

__all__ = [
    "CACHE_VERSION",
    "CacheConfig",
    "FileRecord",
    "cache_file",
    "crop_key",
    "file_key",
    "load_record",
    "save_npy",
    "save_record",
]

#: Bumped when the crop/landmark files or cache records change meaning.
CACHE_VERSION = "1"


@dataclass(frozen=True)
class CacheConfig:
    cache_dir: str
    crop_size: int
    margin: float
    frames_per_video: int
    max_faces: int
    det_tag: str


@dataclass
class FileRecord:
    """What one file gave; also the cache record (as JSON)."""

    status: Literal["ok", "no_face", "failed"]
    reason: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    faces: list[dict[str, Any]] = field(default_factory=list)
    video_id: str | None = None  # set when the content turned out to be a video


def sha1(*parts: object) -> str:
    return hashlib.sha1("\x1f".join(map(str, parts)).encode("utf-8")).hexdigest()


def file_key(path: str, st: os.stat_result, cfg: CacheConfig) -> str:
    return sha1(
        "file",
        CACHE_VERSION,
        path,
        st.st_size,
        st.st_mtime_ns,
        cfg.crop_size,
        cfg.margin,
        cfg.frames_per_video,
        cfg.max_faces,
        cfg.det_tag,
    )


def crop_key(path: str, st: os.stat_result, cfg: CacheConfig, frame: int | None, face: int) -> str:
    return sha1(
        "crop",
        CACHE_VERSION,
        path,
        st.st_size,
        st.st_mtime_ns,
        cfg.crop_size,
        cfg.margin,
        frame,
        face,
        cfg.det_tag,
    )


def cache_file(cfg: CacheConfig, key: str, suffix: str) -> Path:
    return Path(cfg.cache_dir) / key[:2] / f"{key}{suffix}"


def load_record(cfg: CacheConfig, key: str) -> FileRecord | None:
    """The cached result for a file key, if present and all its files exist."""
    rec_path = cache_file(cfg, key, ".json")
    try:
        rec = json.loads(rec_path.read_text(encoding="utf-8"))
        result = FileRecord(
            status=rec["status"],
            info=rec.get("info", {}),
            faces=rec.get("faces", []),
            video_id=rec.get("video_id"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if result.status not in ("ok", "no_face"):
        return None
    root = Path(cfg.cache_dir)
    for f in result.faces:
        for k in ("crop", "landmarks"):
            if f.get(k) and not (root / f[k]).is_file():
                return None
    return result


def save_record(cfg: CacheConfig, key: str, result: FileRecord) -> None:
    rec = {
        "version": CACHE_VERSION,
        "status": result.status,
        "info": result.info,
        "faces": result.faces,
        "video_id": result.video_id,
    }
    text = json.dumps(rec)
    atomic_write(cache_file(cfg, key, ".json"), lambda p: p.write_text(text, encoding="utf-8"))


def save_npy(path: Path, arr: np.ndarray) -> None:
    with path.open("wb") as f:
        np.save(f, arr)


# worker processes (workers > 1): one detector and aligner each
