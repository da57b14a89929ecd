"""The results store of ``facetrust scan``: one SQLite file (WAL journal, one small transaction
per batch of files), shared by the local and the Ray engine and read by the report and export.

Tables (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`):

- ``scans``: one row per run (start/end time, model name and SHA-256, runtime, engine, args).
- ``files``: one row per (path, model, model_sha256): what the file is (size, mtime, content
  SHA-256, kind by content) and its verdict (status ``ok``/``no_face``/``error``, fake
  probability, label, threshold) or its one-line error. ``duplicate_of`` names the row of the
  same content (same SHA-256, same model) whose verdict was copied instead of scoring twice.
  Another model gives other rows for the same path: scans with different models are kept apart.
- ``faces``: the faces of a file, each with its box, detector score, calibrated probability,
  per-expert probabilities (JSON, fused models) and a small JPEG thumbnail. Images: one row per
  face, ``frame_index`` NULL. Videos: one row per face per sampled frame, with its ``track_id``.
- ``frames``: videos: one row per sampled frame (time, max probability over its faces, faces).

A file's rows (its ``files`` row, faces and frames) are written in one transaction, so a scan
killed at any point leaves each file either fully recorded or absent; writing a file again
(``--retry-errors``, a changed file) replaces its rows and keeps its id.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from facetrust.errors import InputError, one_line

__all__ = [
    "SCHEMA_VERSION",
    "FaceRow",
    "FileRecord",
    "FileState",
    "FrameRow",
    "ResultsStore",
]

SCHEMA_VERSION = 1

Status = Literal["ok", "error", "no_face"]
DONE: tuple[str, ...] = ("ok", "no_face")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scans (
    id            INTEGER PRIMARY KEY,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    model         TEXT NOT NULL,
    model_sha256  TEXT NOT NULL,
    runtime       TEXT NOT NULL,
    engine        TEXT NOT NULL,
    args          TEXT NOT NULL,
    summary       TEXT
);
CREATE TABLE IF NOT EXISTS files (
    id               INTEGER PRIMARY KEY,
    scan_id          INTEGER REFERENCES scans(id),
    path             TEXT NOT NULL,
    size             INTEGER,
    mtime            REAL,
    sha256           TEXT,
    kind             TEXT CHECK (kind IN ('image', 'video')),
    status           TEXT NOT NULL CHECK (status IN ('ok', 'error', 'no_face')),
    fake_probability REAL,
    label            TEXT,
    threshold        REAL,
    model            TEXT NOT NULL,
    model_sha256     TEXT NOT NULL,
    scanned_at       TEXT NOT NULL,
    seconds          REAL,
    n_faces          INTEGER NOT NULL DEFAULT 0,
    width            INTEGER,
    height           INTEGER,
    frames_analyzed  INTEGER,
    error            TEXT,
    duplicate_of     INTEGER REFERENCES files(id),
    UNIQUE (path, model, model_sha256)
);
CREATE INDEX IF NOT EXISTS files_by_hash ON files (sha256, model, model_sha256);
CREATE INDEX IF NOT EXISTS files_by_status ON files (status);
CREATE TABLE IF NOT EXISTS faces (
    id               INTEGER PRIMARY KEY,
    file_id          INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    frame_index      INTEGER,
    face_index       INTEGER NOT NULL,
    track_id         INTEGER,
    x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL,
    det_score        REAL NOT NULL,
    fake_probability REAL NOT NULL,
    label            TEXT NOT NULL,
    experts          TEXT,
    thumbnail        BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS faces_unique
    ON faces (file_id, coalesce(frame_index, -1), face_index);
CREATE TABLE IF NOT EXISTS frames (
    file_id          INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    frame_index      INTEGER NOT NULL,
    time_s           REAL NOT NULL,
    fake_probability REAL,
    label            TEXT NOT NULL,
    n_faces          INTEGER NOT NULL,
    PRIMARY KEY (file_id, frame_index)
);
"""

_FILE_COLUMNS = (
    "scan_id",
    "path",
    "size",
    "mtime",
    "sha256",
    "kind",
    "status",
    "fake_probability",
    "label",
    "threshold",
    "model",
    "model_sha256",
    "scanned_at",
    "seconds",
    "n_faces",
    "width",
    "height",
    "frames_analyzed",
    "error",
    "duplicate_of",
)


def utc_now() -> str:
    """The current UTC time as ISO 8601 text with seconds (``2026-12-02T06:40:00Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class FaceRow:
    """One face of a file (images: ``frame_index`` None; videos: one per face per frame)."""

    face_index: int
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    det_score: float
    fake_probability: float
    label: str
    frame_index: int | None = None
    track_id: int | None = None
    experts: dict[str, float] | None = None
    thumbnail: bytes | None = None  # small JPEG of the aligned crop


@dataclass
class FrameRow:
    """One sampled video frame: the max probability over its faces (None: no face)."""

    frame_index: int
    time_s: float
    fake_probability: float | None
    label: str
    n_faces: int


@dataclass
class FileRecord:
    """Everything the store keeps about one file for one model: its ``files`` row, faces and
    frames. Built by :mod:`facetrust.scan.stages`; written whole by :meth:`ResultsStore.write`."""

    path: str
    model: str
    model_sha256: str
    status: Status
    size: int | None = None
    mtime: float | None = None
    sha256: str | None = None
    kind: str | None = None
    fake_probability: float | None = None
    label: str | None = None
    threshold: float | None = None
    seconds: float | None = None
    width: int | None = None
    height: int | None = None
    frames_analyzed: int | None = None
    error: str | None = None
    duplicate_of: int | None = None
    scanned_at: str = field(default_factory=utc_now)
    faces: list[FaceRow] = field(default_factory=list)
    frames: list[FrameRow] = field(default_factory=list)
    scan_id: int | None = None
    n_faces_copied: int | None = None  # duplicates: the original's n_faces (no faces rows)

    @property
    def n_faces(self) -> int:
        """Faces in an image; distinct face tracks in a video (faces per frame summed when a
        video's faces carry no track id); a duplicate's copied count."""
        if self.n_faces_copied is not None:
            return self.n_faces_copied
        if self.kind == "video" and any(f.track_id is not None for f in self.faces):
            return len({f.track_id for f in self.faces})
        return len(self.faces)


@dataclass(frozen=True)
class FileState:
    """What the store already holds for a file (enough to decide: skip, copy, or scan)."""

    id: int
    path: str
    size: int | None
    mtime: float | None
    sha256: str | None
    status: str
    duplicate_of: int | None

    @property
    def done(self) -> bool:
        """Scanned with a verdict (``ok`` or ``no_face``); errors are not done."""
        return self.status in DONE


class ResultsStore:
    """A scan results database (SQLite, WAL). Open it, write :class:`FileRecord` batches, read.

    Args:
        path: the ``.db`` file; created with its tables when missing (not its folder).
        timeout: seconds a writer waits for another writer's lock.

    Raises ``InputError`` (one line) when the path cannot hold a database: a missing folder,
    a directory, a file that is not SQLite, or a store of a newer schema.
    One object per thread (SQLite connections are not shared between threads).
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 60.0) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InputError(f"results store {self.path} is a directory; give a .db file path")
        if not self.path.parent.is_dir():
            raise InputError(f"results store folder does not exist: {self.path.parent}")
        try:
            self._db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: a process kill loses nothing
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise InputError(
                    f"results store {self.path} has schema {version}; this facetrust reads "
                    f"up to {SCHEMA_VERSION} (upgrade facetrust)"
                )
            with self._transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            self.close()
            raise InputError(f"cannot use {self.path} as a results store: {one_line(e)}") from None

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
            self._db = None  # type: ignore[assignment]

    # ---- writing ---------------------------------------------------------------------------
    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type: Any, *rest: object) -> None:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")

    def _transaction(self) -> ResultsStore._Tx:
        return ResultsStore._Tx(self._db)

    def begin_scan(
        self,
        *,
        model: str,
        model_sha256: str,
        runtime: str = "torch",
        engine: str = "local",
        args: dict[str, Any] | None = None,
    ) -> int:
        """Record the start of a run; returns its ``scans.id``."""
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO scans (started_at, model, model_sha256, runtime, engine, args) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (utc_now(), model, model_sha256, runtime, engine, json.dumps(args or {})),
            )
            return int(cur.lastrowid)

    def finish_scan(self, scan_id: int, summary: dict[str, Any]) -> None:
        """Record the end of a run and its summary (counts, seconds)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE scans SET finished_at = ?, summary = ? WHERE id = ?",
                (utc_now(), json.dumps(summary), scan_id),
            )

    def write(self, records: Sequence[FileRecord]) -> list[int]:
        """Write ``records`` in one transaction; returns their ``files.id`` in order.

        A record for a (path, model, model_sha256) already in the store replaces that row (its
        id is kept) and its faces and frames.
        """
        ids = []
        with self._transaction() as db:
            for r in records:
                ids.append(self._write_one(db, r))
        return ids

    def _write_one(self, db: sqlite3.Connection, r: FileRecord) -> int:
        values = {c: getattr(r, c) for c in _FILE_COLUMNS}
        cols = ", ".join(_FILE_COLUMNS)
        marks = ", ".join("?" for _ in _FILE_COLUMNS)
        updates = ", ".join(
            f"{c} = excluded.{c}" for c in _FILE_COLUMNS if c not in ("path", "model")
        )
        file_id = db.execute(
            f"INSERT INTO files ({cols}) VALUES ({marks}) "
            f"ON CONFLICT (path, model, model_sha256) DO UPDATE SET {updates} RETURNING id",
            tuple(values.values()),
        ).fetchone()[0]
        db.execute("DELETE FROM faces WHERE file_id = ?", (file_id,))
        db.execute("DELETE FROM frames WHERE file_id = ?", (file_id,))
        db.executemany(
            "INSERT INTO faces (file_id, frame_index, face_index, track_id, x0, y0, x1, y1, "
            "det_score, fake_probability, label, experts, thumbnail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    file_id,
                    f.frame_index,
                    f.face_index,
                    f.track_id,
                    *(float(v) for v in f.box),
                    float(f.det_score),
                    float(f.fake_probability),
                    f.label,
                    None if f.experts is None else json.dumps(f.experts),
                    f.thumbnail,
                )
                for f in r.faces
            ],
        )
        db.executemany(
            "INSERT INTO frames (file_id, frame_index, time_s, fake_probability, label, n_faces) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (file_id, f.frame_index, f.time_s, f.fake_probability, f.label, f.n_faces)
                for f in r.frames
            ],
        )
        return int(file_id)

    def touch(self, file_id: int, size: int, mtime: float) -> None:
        """Record a new size/mtime for a row whose content hash is unchanged."""
        with self._transaction() as db:
            db.execute("UPDATE files SET size = ?, mtime = ? WHERE id = ?", (size, mtime, file_id))

    # ---- reading ---------------------------------------------------------------------------
    def state(self, path: str, model: str, model_sha256: str) -> FileState | None:
        """The row of ``path`` for this model, if any."""
        row = self._db.execute(
            "SELECT id, path, size, mtime, sha256, status, duplicate_of FROM files "
            "WHERE path = ? AND model = ? AND model_sha256 = ?",
            (path, model, model_sha256),
        ).fetchone()
        return None if row is None else FileState(**dict(row))

    def original(self, sha256: str, model: str, model_sha256: str) -> FileState | None:
        """A done, non-duplicate row of the same content for this model (the one whose verdict a
        duplicate copies), if any."""
        row = self._db.execute(
            "SELECT id, path, size, mtime, sha256, status, duplicate_of FROM files "
            "WHERE sha256 = ? AND model = ? AND model_sha256 = ? AND duplicate_of IS NULL "
            "AND status IN ('ok', 'no_face') ORDER BY id LIMIT 1",
            (sha256, model, model_sha256),
        ).fetchone()
        return None if row is None else FileState(**dict(row))

    def file_row(self, file_id: int) -> dict[str, Any]:
        """One ``files`` row as a dict."""
        row = self._db.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None:
            raise KeyError(file_id)
        return dict(row)

    def counts(self, model: str | None = None, model_sha256: str | None = None) -> dict[str, int]:
        """Files per status (``ok``, ``no_face``, ``error``), ``duplicates``, ``faces`` and
        ``files``, for one model or all."""
        where, params = _model_filter(model, model_sha256)
        out = {"ok": 0, "no_face": 0, "error": 0}
        for status, n in self._db.execute(
            f"SELECT status, count(*) FROM files {where} GROUP BY status", params
        ):
            out[status] = int(n)
        out["files"] = out["ok"] + out["no_face"] + out["error"]
        dup_where = f"{where} AND" if where else "WHERE"
        out["duplicates"] = int(
            self._db.execute(
                f"SELECT count(*) FROM files {dup_where} duplicate_of IS NOT NULL", params
            ).fetchone()[0]
        )
        out["faces"] = int(
            self._db.execute(
                f"SELECT count(*) FROM faces JOIN files ON files.id = faces.file_id {where}",
                params,
            ).fetchone()[0]
        )
        return out

    def models(self) -> list[tuple[str, str]]:
        """The (model, model_sha256) pairs present in ``files``."""
        return [
            (m, s)
            for m, s in self._db.execute(
                "SELECT DISTINCT model, model_sha256 FROM files ORDER BY model"
            )
        ]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only SQL query as dicts (reports, exports, tests)."""
        return [dict(r) for r in self._db.execute(sql, tuple(params))]

    def iter_files(
        self, model: str | None = None, model_sha256: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every ``files`` row (for one model or all), in id order."""
        where, params = _model_filter(model, model_sha256)
        for row in self._db.execute(f"SELECT * FROM files {where} ORDER BY id", params):
            yield dict(row)


def _model_filter(model: str | None, model_sha256: str | None) -> tuple[str, tuple]:
    clauses, params = [], []
    if model is not None:
        clauses.append("files.model = ?")
        params.append(model)
    if model_sha256 is not None:
        clauses.append("files.model_sha256 = ?")
        params.append(model_sha256)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
