"""Background jobs: a bounded worker pool; state, progress and results in SQLite plus files.

A job is a *task* (any callable ``task(ctx) -> JobOutput``) run on a worker thread. The runner
admits at most ``workers + queue_size`` unfinished jobs; one more raises ``QueueFull`` (the API
answers 429). Everything about a job lives under one server-controlled folder::

    <root>/jobs.sqlite3        one row per job: kind, state, progress, report, file names
    <root>/<job id>/input      the uploaded bytes (deleted once the job ends)
    <root>/<job id>/<name>     result files written by the task

so a restarted server still serves every finished result. Jobs that were queued or running
when the previous process stopped are marked failed ("interrupted") at startup and their
folders removed. A sweeper thread applies the TTL continuously and keeps the store under a
size quota, evicting the oldest finished jobs first; folders without a row (a crash between
two steps) go too. Job ids are random 128-bit hex strings; file names come from tasks, never
from clients, and are checked.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from facetrust.errors import FacetrustError, one_line
from facetrust.files import atomic_write_bytes
from facetrust.serve.errors import public_message

__all__ = [
    "Job",
    "JobContext",
    "JobOutput",
    "JobRunner",
    "JobStore",
    "QueueFull",
    "Task",
    "is_job_id",
]

log = logging.getLogger("facetrust.serve.jobs")

JobState = Literal["queued", "running", "done", "failed"]
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_FILE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_INPUT = "input"
INTERRUPTED = "interrupted by a server restart; submit it again"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    error TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    report TEXT,
    files TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL,
    started REAL,
    finished REAL
)
"""


def is_job_id(text: str) -> bool:
    """Whether ``text`` has the form of a job id (32 lower-case hex digits)."""
    return bool(_JOB_ID.match(text or ""))


@dataclass
class Job:
    """One job's row."""

    id: str
    kind: str
    state: JobState
    progress: float
    message: str
    error: str | None
    params: dict[str, Any]
    report: dict[str, Any] | None
    files: list[str]
    created: float
    started: float | None
    finished: float | None

    @property
    def finished_ok(self) -> bool:
        return self.state == "done"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "progress": round(self.progress, 4),
            "message": self.message,
            "error": self.error,
            "created": _iso(self.created),
            "started": _iso(self.started),
            "finished": _iso(self.finished),
        }


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


@dataclass
class JobOutput:
    """What a task returns: a JSON-ready report and named result files."""

    report: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


class QueueFull(Exception):
    """The runner already holds ``workers + queue_size`` unfinished jobs."""


class JobStore:
    """SQLite rows plus one folder per job, under ``root`` (created with mode 0700)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db_path = self.root / "jobs.sqlite3"
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
        self._sweeper: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return f"JobStore(root={str(self.root)!r})"

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
        db.row_factory = sqlite3.Row
        return db

    def _dir(self, job_id: str) -> Path:
        if not is_job_id(job_id):
            raise ValueError("not a job id")
        return self.root / job_id

    # ---- rows ------------------------------------------------------------------------------
    def create(self, kind: str, data: bytes | None = None, params: dict | None = None) -> Job:
        job_id = uuid.uuid4().hex
        folder = self._dir(job_id)
        folder.mkdir(mode=0o700)
        if data is not None:
            (folder / _INPUT).write_bytes(data)
        now = time.time()
        with self._connect() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, state, params, created) VALUES (?, ?, 'queued', ?, ?)",
                (job_id, kind, json.dumps(params or {}), now),
            )
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        if not is_job_id(job_id):
            return None
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _row_to_job(row)

    def update(self, job_id: str, **fields: Any) -> None:
        allowed = {"state", "progress", "message", "error", "started", "finished"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot update {sorted(bad)}")
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*fields.values(), job_id))

    def finish(self, job_id: str, output: JobOutput) -> None:
        """Write the result files (atomically), then mark the job done with its report."""
        folder = self._dir(job_id)
        for name, data in output.files.items():
            if not _FILE_NAME.match(name) or name == _INPUT:
                raise ValueError(f"bad result file name {name!r}")
            atomic_write_bytes(folder / name, data)
        report = json.dumps(output.report, default=_json_default, allow_nan=False)
        with self._connect() as db:
            db.execute(
                "UPDATE jobs SET state = 'done', progress = 1.0, report = ?, files = ?, "
                "finished = ?, message = 'done' WHERE id = ?",
                (report, json.dumps(sorted(output.files)), time.time(), job_id),
            )
        self._wake.set()  # the quota is checked soon after every new result

    def fail(self, job_id: str, error: str) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE jobs SET state = 'failed', error = ?, finished = ?, message = 'failed' "
                "WHERE id = ?",
                (one_line(error), time.time(), job_id),
            )

    # ---- files -----------------------------------------------------------------------------
    def read_input(self, job_id: str) -> bytes:
        return (self._dir(job_id) / _INPUT).read_bytes()

    def delete_input(self, job_id: str) -> None:
        (self._dir(job_id) / _INPUT).unlink(missing_ok=True)

    def read_file(self, job: Job, name: str) -> bytes:
        """A result file of a finished job (only names the job's task wrote)."""
        return self.file_path(job, name).read_bytes()

    def file_path(self, job: Job, name: str) -> Path:
        """Where a result file of a finished job lies (for streaming it from disk)."""
        if name not in job.files:
            raise FileNotFoundError(name)
        path = self._dir(job.id) / name
        if not path.is_file():
            raise FileNotFoundError(name)
        return path

    # ---- maintenance -----------------------------------------------------------------------
    def recover(self) -> int:
        """Mark jobs left queued or running by a previous process as failed; return how many."""
        with self._connect() as db:
            rows = db.execute("SELECT id FROM jobs WHERE state IN ('queued', 'running')").fetchall()
            db.execute(
                "UPDATE jobs SET state = 'failed', error = ?, finished = ?, message = 'failed' "
                "WHERE state IN ('queued', 'running')",
                (INTERRUPTED, time.time()),
            )
        for row in rows:
            shutil.rmtree(self._dir(row["id"]), ignore_errors=True)
        return len(rows)

    def purge(self, max_age_s: float) -> int:
        """Delete finished jobs (rows and folders) older than ``max_age_s``; return how many."""
        cutoff = time.time() - max_age_s
        with self._connect() as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE state IN ('done', 'failed') AND finished < ?",
                (cutoff,),
            ).fetchall()
            for row in rows:
                shutil.rmtree(self._dir(row["id"]), ignore_errors=True)
                db.execute("DELETE FROM jobs WHERE id = ?", (row["id"],))
        return len(rows)

    def sweep(self, max_age_s: float, quota_bytes: int) -> dict[str, int]:
        """Apply the TTL, then the size quota (oldest finished jobs first), then remove folders
        that have no row. Queued and running jobs are never touched. Returns what went."""
        expired = self.purge(max_age_s)
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, state FROM jobs ORDER BY COALESCE(finished, created) ASC"
            ).fetchall()
        known = {r["id"] for r in rows}
        sizes = {r["id"]: _folder_bytes(self.root / r["id"]) for r in rows}
        total = sum(sizes.values())
        evicted = 0
        for r in rows:
            if total <= quota_bytes:
                break
            if r["state"] not in ("done", "failed"):
                continue
            self._delete(r["id"])
            total -= sizes[r["id"]]
            evicted += 1
        orphans = 0
        for entry in self.root.iterdir():
            # a folder is made just before its row: leave very young ones alone
            if (
                entry.is_dir()
                and is_job_id(entry.name)
                and entry.name not in known
                and time.time() - entry.stat().st_mtime > 60
            ):
                shutil.rmtree(entry, ignore_errors=True)
                orphans += 1
        if expired or evicted or orphans:
            log.info(
                "job store swept",
                extra={"expired": expired, "evicted": evicted, "orphans": orphans, "bytes": total},
            )
        return {"expired": expired, "evicted": evicted, "orphans": orphans, "bytes": total}

    def _delete(self, job_id: str) -> None:
        shutil.rmtree(self._dir(job_id), ignore_errors=True)
        with self._connect() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def start_sweeper(self, max_age_s: float, quota_bytes: int, interval_s: float = 60.0) -> None:
        """Sweep now and then every ``interval_s`` seconds (and soon after each new result)."""
        if self._sweeper is not None and self._sweeper.is_alive():
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.sweep(max_age_s, quota_bytes)
                except (OSError, sqlite3.Error):
                    log.exception("job store sweep failed")
                self._wake.wait(interval_s)
                self._wake.clear()

        self._sweeper = threading.Thread(target=loop, name="facetrust-job-sweeper", daemon=True)
        self._sweeper.start()

    def stop_sweeper(self) -> None:
        self._stop.set()
        self._wake.set()

    def counts(self) -> dict[str, int]:
        with self._connect() as db:
            rows = db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").fetchall()
        return {r["state"]: int(r["n"]) for r in rows}


def _folder_bytes(folder: Path) -> int:
    try:
        return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    except OSError:
        return 0


def _row_to_job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        state=row["state"],
        progress=float(row["progress"]),
        message=row["message"],
        error=row["error"],
        params=json.loads(row["params"] or "{}"),
        report=None if row["report"] is None else json.loads(row["report"]),
        files=json.loads(row["files"] or "[]"),
        created=row["created"],
        started=row["started"],
        finished=row["finished"],
    )


def _json_default(obj: Any) -> Any:
    """numpy scalars and arrays, paths and tuples in task reports."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


class JobContext:
    """What a running task sees: its parameters, its input bytes and a progress callback."""

    def __init__(self, store: JobStore, job: Job) -> None:
        self._store = store
        self.job_id = job.id
        self.params = dict(job.params)
        self._last = (0.0, "", 0.0)

    def read_input(self) -> bytes:
        """The bytes uploaded with the job."""
        return self._store.read_input(self.job_id)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress in [0, 1] with a short message (written at most ~5 times a second)."""
        fraction = min(max(float(fraction), 0.0), 1.0)
        now = time.monotonic()
        last_f, last_m, last_t = self._last
        if message == last_m and now - last_t < 0.2 and fraction - last_f < 0.1:
            return
        self._last = (fraction, message, now)
        self._store.update(self.job_id, progress=fraction, message=one_line(message)[:200])


Task = Callable[[JobContext], JobOutput]


class JobRunner:
    """Run tasks on ``workers`` threads with at most ``queue_size`` more waiting.

    ``submit`` raises ``QueueFull`` instead of queueing without bound. A task's
    ``FacetrustError`` becomes the job's error message; any other exception is logged with its
    traceback and the job fails with a generic message.
    """

    def __init__(self, store: JobStore, workers: int = 1, queue_size: int = 8) -> None:
        if workers < 1 or queue_size < 0:
            raise ValueError("workers must be >= 1 and queue_size >= 0")
        self.store = store
        self.workers = workers
        self.queue_size = queue_size
        self.capacity = workers + queue_size
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._pending = 0
        self._count_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="facetrust-job")

    def __repr__(self) -> str:
        return f"JobRunner(workers={self.workers}, queue_size={self.queue_size})"

    @property
    def pending(self) -> int:
        """Unfinished jobs (queued or running) submitted to this runner."""
        return self._pending

    def full(self) -> bool:
        return self._pending >= self.capacity

    def submit(
        self, kind: str, task: Task, data: bytes | None = None, params: dict | None = None
    ) -> Job:
        """Store the job and queue ``task``; ``QueueFull`` when no slot is free."""
        if not self._slots.acquire(blocking=False):
            raise QueueFull(f"{self.capacity} jobs are already queued or running")
        with self._count_lock:
            self._pending += 1
        try:
            job = self.store.create(kind, data, params)
            self._pool.submit(self._run, job, task)
        except BaseException:
            self._release()
            raise
        log.info("job queued", extra={"job_id": job.id, "kind": kind})
        return job

    def _release(self) -> None:
        with self._count_lock:
            self._pending -= 1
        self._slots.release()

    def _run(self, job: Job, task: Task) -> None:
        t0 = time.perf_counter()
        try:
            self.store.update(job.id, state="running", started=time.time(), message="started")
            output = task(JobContext(self.store, job))
            if not isinstance(output, JobOutput):
                raise TypeError(f"task returned {type(output).__name__}, not JobOutput")
            self.store.finish(job.id, output)
            log.info(
                "job done",
                extra={"job_id": job.id, "seconds": round(time.perf_counter() - t0, 3)},
            )
        except FacetrustError as exc:
            log.info("job failed", extra={"job_id": job.id, "reason": one_line(exc)})
            self.store.fail(job.id, public_message(exc))
        except Exception:
            log.exception("job crashed", extra={"job_id": job.id})
            self.store.fail(job.id, "internal error while running the job")
        finally:
            try:
                self.store.delete_input(job.id)
            finally:
                self._release()

    def shutdown(self, wait: bool = False) -> None:
        """Stop taking jobs; queued ones are dropped (marked interrupted at the next start)."""
        self._pool.shutdown(wait=wait, cancel_futures=True)
