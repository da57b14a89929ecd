"""``Scanner``: scan folders, files, manifests or stdin into a results store, resumably.

The local engine: the scoring process walks the inputs lazily, hashes each file and decides
(already done? a copy of a done file? to scan), worker processes decode and find faces
(:class:`~facetrust.scan.stages.Preparer`), and the scoring process scores the faces of many
files in one batch (:class:`~facetrust.scan.stages.ScanModel`) and writes each batch's rows in
one transaction. The work in flight is bounded (files submitted, files awaiting scoring), so
memory stays flat however large the tree.

Resumable and idempotent: a file whose (path, model, model SHA-256) row is done is skipped (by
size and mtime, else by its content hash); errors are retried only with ``retry_errors``; a file
with the content of a done file is recorded as its duplicate without scoring. Rows are written
whole or not at all, so a scan killed at any point and run again loses and doubles nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from facetrust.config import Settings, default_threads
from facetrust.errors import InputError, MediaError, one_line
from facetrust.progress import ProgressBar
from facetrust.scan.inputs import check_sources, count_sources, iter_sources
from facetrust.scan.stages import (
    FileInfo,
    Prepared,
    Preparer,
    ScanModel,
    duplicate_record,
    file_path,
    probe,
)
from facetrust.scan.store import FileRecord, ResultsStore

__all__ = ["ScanSummary", "Scanner"]


@dataclass
class ScanSummary:
    """What one run did. ``files`` counts the inputs seen; ``ok``/``no_face``/``error`` the files
    recorded by this run (``duplicates`` of them copied a done file's verdict); ``skipped`` the
    files already done; ``faces`` the faces scored; rates are per second of the run."""

    store: str
    model: str
    model_sha256: str
    scan_id: int
    files: int = 0
    ok: int = 0
    no_face: int = 0
    error: int = 0
    duplicates: int = 0
    skipped: int = 0
    faces: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time of the scanning process (all its threads)
    worker_cpu_seconds: float = 0.0  # CPU time the worker processes spent on the files
    prepared_here: int = 0  # files whose faces the scanning process found (with workers: idle)
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)  # the first few "path: message" lines

    @property
    def recorded(self) -> int:
        return self.ok + self.no_face + self.error

    @property
    def files_per_s(self) -> float:
        return self.recorded / self.seconds if self.seconds > 0 else 0.0

    @property
    def faces_per_s(self) -> float:
        return self.faces / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(files_per_s=round(self.files_per_s, 2), faces_per_s=round(self.faces_per_s, 2))
        return d

    def text(self) -> str:
        """The few lines the CLI prints."""
        head = "scan interrupted" if self.interrupted else "scan done"
        lines = [
            f"{head}: {self.files} files seen, {self.skipped} already done; recorded "
            f"{self.ok} ok, {self.no_face} no_face, {self.error} error "
            f"({self.duplicates} duplicates); {self.faces} faces",
            f"{self.seconds:.1f} s, {self.files_per_s:.2f} files/s, "
            f"{self.faces_per_s:.2f} faces/s; model {self.model} ({self.model_sha256}); "
            f"store {self.store}",
        ]
        lines += [f"  error: {e}" for e in self.errors]
        return "\n".join(lines)


# ---- worker processes ---------------------------------------------------------------------
_WORKER: dict[str, Preparer] = {}


def _init_worker(contract: Any, settings: Settings, frames: int, fps: float | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the scoring process handles Ctrl-C
    _exit_with_parent()
    import cv2

    cv2.setNumThreads(1)
    _WORKER["preparer"] = Preparer(contract, settings, frames=frames, fps=fps, threads=1)


def _exit_with_parent() -> None:
    """End this worker when the scanning process goes (killed with SIGKILL, it would otherwise
    leave its workers blocked on their task queue, keeping the fork server alive too)."""
    import multiprocessing
    import threading

    parent = multiprocessing.parent_process()  # the process that asked for this worker
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the parent's end of the sentinel pipe closes
        os._exit(1)

    threading.Thread(target=watch, name="facetrust-parent-watch", daemon=True).start()


def _prepare_in_worker(info: FileInfo) -> Prepared:
    return _WORKER["preparer"](info)


def _pool_context():
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    # workers fork from a server that has imported the (torch-free) stages, not the caller's
    # __main__ (a script without a main guard would run again in every worker)
    ctx.set_forkserver_preload(["facetrust.scan.scanner"])
    return ctx


class Scanner:
    """Scan media into a :class:`~facetrust.scan.store.ResultsStore`.

    Args:
        out: the results store (``.db``; created when missing, its folder must exist).
        model: checkpoint path or shipped model name (default: the settings', else the default).
        workers: decoding and face-finding processes (0: in the scoring process); at most one
            fewer than the threads; default half the threads for a CNN alone (2 threads: 1
            worker), one in eight for a model with a CLIP expert (2 threads: 0 workers).
        threads: CPU threads in all (default: ``settings.threads``, else the cores this process
            may use). Each worker uses one; the scoring process the rest (at least one).
        batch_size: faces per forward pass; files are scored together until a batch is full.
        retry_errors: scan again the files whose row is an error.
        frames, fps: video sampling, as for ``Detector``.
        device: torch device for the model.
        settings: limits and defaults.
        progress: show a progress bar on stderr (None: when stderr is a terminal).
        engine_args: recorded in the ``scans`` row (the command's arguments).
        model_kwargs: further ``Detector`` arguments (e.g. a runtime, where supported).

    ``scanner.run(["photos/", "list.jsonl"])`` returns a :class:`ScanSummary`.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        *,
        model: str | Path | None = None,
        workers: int | None = None,
        threads: int | None = None,
        batch_size: int = 32,
        retry_errors: bool = False,
        frames: int | None = None,
        fps: float | None = None,
        device: str | None = None,
        settings: Settings | None = None,
        progress: bool | None = None,
        engine_args: dict[str, Any] | None = None,
        **model_kwargs: Any,
    ) -> None:
        self.settings = settings or Settings()
        if batch_size < 1:
            raise InputError("batch_size must be at least 1")
        if workers is not None and workers < 0:
            raise InputError("workers must be 0 or more")
        if threads is not None and threads < 1:
            raise InputError("threads must be at least 1")
        self.out = Path(out)
        ResultsStore(self.out).close()  # a bad store path fails here, before the model loads
        self.threads = int(threads or self.settings.threads or default_threads())
        # one thread per worker and at least one for the model: never more threads in all
        # than asked for (so with 1 thread, files are decoded in the scanning process). By
        # default the threads are shared by what each stage costs: a CNN alone (facetrust-fast,
        # 12-22 ms a face against 17 ms to find faces) gets half; a model with a CLIP expert
        # (facetrust-default, ~285 CPU ms a face) gets all but one in eight, so on 2 threads
        # faces are found in the scanning process and both threads run the model
        most = self.threads - 1
        share = 8 if _reads_clip(model, self.settings) else 2
        default = self.threads // share if self.threads > 1 else 0
        self.workers = default if workers is None else min(int(workers), most)
        self.model_threads = max(self.threads - self.workers, 1)
        self.batch_size = int(batch_size)
        self.retry_errors = bool(retry_errors)
        self.progress = progress
        self.engine_args = dict(engine_args or {})
        # how the model is loaded, beyond batch and settings (RayScanner's actors load it alike)
        self.model_ref = model
        self.model_args: dict[str, Any] = dict(
            device=device, frames=frames, fps=fps, **model_kwargs
        )
        self.model = ScanModel(
            model,
            batch_size=batch_size,
            # the scoring process's share of the threads (ONNX Runtime reads it at load)
            settings=self.settings.model_copy(update={"threads": self.model_threads}),
            **self.model_args,
        )
        self.frames = self.model.detector.frames
        self.fps = fps
        self.runtime = str(getattr(self.model.detector, "runtime", None) or "torch")

    def __repr__(self) -> str:
        return (
            f"Scanner(out={str(self.out)!r}, model={self.model.name!r}, workers={self.workers}, "
            f"threads={self.threads}, batch_size={self.batch_size}, "
            f"retry_errors={self.retry_errors})"
        )

    def run(
        self, sources: Iterable[str | os.PathLike], *, stdin: TextIO | None = None
    ) -> ScanSummary:
        """Scan ``sources`` (folders, files, manifests, ``-`` for paths on ``stdin``)."""
        sources = check_sources(sources)
        total = count_sources(sources)
        if total == 0:
            raise InputError("no image or video files found in the given inputs")
        # the model's share of the threads: torch's when it runs the model (ONNX Runtime
        # read it from the settings at load; torch is then not imported at all)
        torch = sys.modules.get("torch")
        before = torch.get_num_threads() if torch is not None else None
        if torch is not None:
            torch.set_num_threads(self.model_threads)
        try:
            with ResultsStore(self.out) as store:
                return _Run(self, store, sources, stdin, total).go()
        finally:
            if torch is not None:
                torch.set_num_threads(before)


def _reads_clip(model: str | Path | None, settings: Settings) -> bool:
    """Whether the model fuses a CLIP expert (its checkpoint header says; nothing loaded).
    A model that cannot be read is left to the model's own loading to report."""
    from facetrust.errors import FacetrustError
    from facetrust.models import read_checkpoint_meta
    from facetrust.models.zoo import configured_model

    try:
        meta = read_checkpoint_meta(configured_model(model, settings))
    except FacetrustError:
        return False
    return "clip" in meta.fusion_inputs


class _Run:
    """One run of the local engine (the scoring process's loop)."""

    engine = "local"  # recorded in the scans row (the Ray engine's subclass says "ray")

    def __init__(
        self,
        scanner: Scanner,
        store: ResultsStore,
        sources: list[str],
        stdin: TextIO | None,
        total: int | None,
    ) -> None:
        self.s = scanner
        self.store = store
        self.model = scanner.model
        self.paths = iter_sources(sources, stdin)
        self.total = total
        args = {"sources": sources, "workers": scanner.workers, "threads": scanner.threads}
        args.update(batch_size=scanner.batch_size, retry_errors=scanner.retry_errors)
        args.update(frames=scanner.frames, fps=scanner.fps, **scanner.engine_args)
        self.scan_id = store.begin_scan(
            model=self.model.name,
            model_sha256=self.model.sha256,
            runtime=scanner.runtime,
            engine=self.engine,
            args=args,
        )
        self.summary = ScanSummary(
            str(scanner.out), self.model.name, self.model.sha256, self.scan_id
        )
        # Files at the workers: enough for a whole batch, so that they keep finding faces while
        # the model scores the last batch (with 4 files, 1 worker and a batch of 32, the
        # worker sat idle through each batch: the two processes took turns instead of running
        # side by side).
        self.max_inflight = max(4 * scanner.workers, scanner.batch_size if scanner.workers else 2)
        self.max_ready = max(scanner.batch_size, 8)  # files awaiting scoring, at most
        self.inflight: dict[Future, FileInfo] = {}
        self.inflight_paths: set[str] = set()
        self.inflight_hashes: dict[str, str] = {}  # content sha256 -> the path being scanned
        self.waiting: dict[str, list[FileInfo]] = {}  # copies of files in flight, by hash
        self.ready: list[Prepared] = []
        self.to_write: list[FileRecord] = []
        self.bar: ProgressBar | None = None
        self.t0 = time.perf_counter()
        self.cpu0 = time.process_time()

    # ---- the loop ---------------------------------------------------------------------------
    def go(self) -> ScanSummary:
        pool = None
        if self.s.workers > 0:
            pool = ProcessPoolExecutor(
                self.s.workers,
                mp_context=_pool_context(),
                initializer=_init_worker,
                initargs=(self.model.contract, self.s.settings, self.s.frames, self.s.fps),
            )
        # this process's own Preparer: all the files without workers; with workers, the files
        # it takes on while it would otherwise wait for them (see _loop)
        local = Preparer(
            self.model.contract,
            self.s.settings,
            frames=self.s.frames,
            fps=self.s.fps,
            face_detector=self.model.detector.faces,
        )
        try:
            with ProgressBar(self.total, "scanning", enabled=self.s.progress) as self.bar:
                self._loop(pool, local)
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            if pool is not None:
                if self.summary.interrupted:  # workers only read files: stop them now
                    for proc in list((getattr(pool, "_processes", None) or {}).values()):
                        proc.terminate()
                pool.shutdown(wait=True, cancel_futures=True)
            self.summary.seconds = time.perf_counter() - self.t0
            self.summary.cpu_seconds = time.process_time() - self.cpu0
            self.store.finish_scan(self.scan_id, self.summary.as_dict())
        return self.summary

    def _loop(self, pool: ProcessPoolExecutor | None, local: Preparer) -> None:
        """Submit files to the workers, score ready files in batches, write. With workers, when
        nothing has come back and no batch is ready to score, this process finds the faces of
        the next file itself instead of waiting: finding faces is the slower stage (on 2 cores,
        1 worker spent ~19 CPU ms a face against the model's ~13 with ONNX Runtime), so the
        scoring process would otherwise idle part of the time."""
        exhausted = False
        while True:
            while not exhausted and len(self.inflight) < self.max_inflight:
                if len(self.ready) >= self.max_ready:
                    break
                path = next(self.paths, None)
                if path is None:
                    exhausted = True
                    break
                info = self._admit(path)
                if info is None:
                    continue
                if pool is None:
                    self.ready.append(local(info))
                    self.summary.prepared_here += 1
                else:
                    self.inflight[pool.submit(_prepare_in_worker, info)] = info
            if self.inflight and len(self.ready) < self.max_ready:
                help_now = not exhausted and sum(p.n_crops for p in self.ready) < self.s.batch_size
                done, _ = wait(
                    list(self.inflight), timeout=0 if help_now else 0.5, return_when=FIRST_COMPLETED
                )
                for fut in done:
                    self.inflight.pop(fut)
                    prepared = fut.result()
                    self.summary.worker_cpu_seconds += prepared.cpu_seconds
                    self.ready.append(prepared)
                if not done and help_now:  # rather than wait: the next file, here
                    path = next(self.paths, None)
                    if path is None:
                        exhausted = True
                    elif (info := self._admit(path)) is not None:
                        self.ready.append(local(info))
                        self.summary.prepared_here += 1
            crops = sum(p.n_crops for p in self.ready)
            if self.ready and (
                crops >= self.s.batch_size or len(self.ready) >= self.max_ready or not self.inflight
            ):
                self._score()
            self._flush()
            if exhausted and not self.inflight and not self.ready:
                break

    # ---- deciding what to do with a path ----------------------------------------------------
    def _admit(self, raw: str) -> FileInfo | None:
        """Skip, record (error or duplicate), or return the file's info to scan it."""
        self.summary.files += 1
        path = file_path(raw)
        name, sha = self.model.name, self.model.sha256
        if path in self.inflight_paths:
            return self._skip()
        state = self.store.state(path, name, sha)
        if state is not None and not state.done and not self.s.retry_errors:
            return self._skip()  # an error: retried only when asked
        if state is not None and state.done:
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if st is not None and st.st_size == state.size and float(st.st_mtime) == state.mtime:
                return self._skip()  # unchanged since it was scanned
        try:
            info = probe(path)
        except MediaError as e:
            self._record([self.model.error(None, path, str(e))])
            return None
        if state is not None and state.done and state.sha256 == info.sha256:
            self.store.touch(state.id, info.size, info.mtime)
            return self._skip()
        if info.sha256 in self.inflight_hashes:
            self.waiting.setdefault(info.sha256, []).append(info)
            return None
        original = self.store.original(info.sha256, name, sha)
        if original is not None and original.path != path:
            self._record([duplicate_record(info, self.store.file_row(original.id))])
            return None
        self.inflight_paths.add(path)
        self.inflight_hashes[info.sha256] = path
        return info

    def _skip(self) -> None:
        self.summary.skipped += 1
        self._advance()
        return None

    # ---- scoring and writing ----------------------------------------------------------------
    def _score(self) -> None:
        batch, self.ready = self.ready, []
        records = self.model.score(batch)
        self._scored(records, sum(p.n_crops for p in batch if p.error is None))

    def _scored(self, records: list[FileRecord], faces: int) -> None:
        """Record files scored here or elsewhere (the Ray engine), then their waiting copies."""
        self.summary.faces += faces
        self._record(records)
        self._flush()
        for rec in records:  # copies of these files: their rows now exist to point at
            self.inflight_paths.discard(rec.path)
            self.inflight_hashes.pop(rec.sha256 or "", None)
            copies = self.waiting.pop(rec.sha256 or "", [])
            if copies:
                row = self.store.state(rec.path, rec.model, rec.model_sha256)
                original = self.store.file_row(row.id)
                self._record([duplicate_record(info, original) for info in copies])

    def _record(self, records: list[FileRecord]) -> None:
        for r in records:
            r.scan_id = self.scan_id
        self.to_write.extend(records)

    def _flush(self) -> None:
        if not self.to_write:
            return
        records, self.to_write = self.to_write, []
        self.store.write(records)
        for r in records:
            setattr(self.summary, r.status, getattr(self.summary, r.status) + 1)
            self.summary.duplicates += r.duplicate_of is not None
            if r.status == "error" and len(self.summary.errors) < 10:
                self.summary.errors.append(f"{r.path}: {r.error}")
        self._advance(len(records))

    def _advance(self, n: int = 1) -> None:
        if self.bar is None:
            return
        dt = max(time.perf_counter() - self.t0, 1e-9)
        rates = {
            "files/s": f"{self.summary.recorded / dt:.1f}",
            "faces/s": f"{self.summary.faces / dt:.1f}",
        }
        self.bar.advance(n, **rates)


def resume_hint(argv: list[str] | None = None) -> str:
    """The line that tells how to resume an interrupted scan."""
    cmd = " ".join(argv if argv is not None else ["facetrust", *sys.argv[1:]])
    return (
        "interrupted: every file recorded so far is kept; run the same command to resume: "
        + one_line(cmd)
    )
