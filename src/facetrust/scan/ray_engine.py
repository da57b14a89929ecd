"""The Ray engine of ``facetrust scan`` (``--engine ray``): the same stages as the local engine,
run as a Ray Data pipeline, the rows written by the driver to the same results store.

::

    driver: walk inputs -> probe + decide (skip / duplicate / scan), as the local engine
      -> ray.data.from_items(files to scan)
      -> map(prepare)                 CPU tasks: decode, find faces, cut crops (Preparer)
      -> map_batches(Scorer)          an actor pool: the model loaded once per actor,
                                      the faces of many files scored in one batch (ScanModel)
      -> driver: rows written to the SQLite store in small transactions

The driver makes every decision the local engine makes (with the same code), so a run is
resumable and idempotent in the same way: a done file is skipped, a copy of a done file is
recorded as its duplicate, errors are retried only when asked, and a file's rows are written
whole or not at all. Inputs go to the pipeline in chunks (``chunk_files``); a chunk is one Ray
Data execution, so memory stays bounded on a tree of any size, and the model is loaded once per
actor per chunk.

Without an ``address`` a private local Ray instance is started with ``workers`` CPUs (no
dashboard, no usage reporting, logs in a temporary folder) and shut down at the end. With an
``address`` (``auto``, ``ray://host:10001``) the scan runs on that cluster: its nodes need
facetrust installed and the input paths readable under the same names (shared storage); the
store is written by the driver only. See docs/scale.md.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from facetrust.errors import InputError, ModelError
from facetrust.extras import require
from facetrust.progress import ProgressBar
from facetrust.scan.inputs import check_sources, count_sources
from facetrust.scan.scanner import Scanner, ScanSummary, _Run
from facetrust.scan.stages import FileInfo, Preparer, ScanModel
from facetrust.scan.store import FileRecord, ResultsStore

__all__ = ["RayScanner", "ray_session", "remove_stale_sessions"]

#: files a decoding worker process handles before Ray replaces it: bounds what a decoder can leak
#: on hostile inputs (and, being set on this stage only, keeps Ray Data from fusing decoding
#: into the scoring actors, which would serialise the two)
DECODER_CALLS = 1000

#: environment for Ray (each can be overridden): no usage reporting, no packaging of the working
#: folder for `uv run` (workers use this Python environment), no C++ log lines on the terminal
#: (failures reach the driver as Python exceptions)
_RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    "RAY_BACKEND_LOG_LEVEL": "fatal",
}


def _import_ray():
    require("scale")
    for k, v in _RAY_ENV.items():
        os.environ.setdefault(k, v)
    import ray
    import ray.data

    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, cpus: int = 2) -> Iterator[Any]:
    """The ``ray`` module, initialised: connected to ``address``, else a private local instance
    with ``cpus`` CPUs (127.0.0.1, no dashboard, logs in a temporary folder that is removed
    after). A Ray already initialised in this process is used as it is and left running.
    Raises ``MissingExtraError`` (one line) without the ``scale`` extra."""
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    common: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.ERROR,
        "namespace": "facetrust",
    }
    tmp = None
    if address:
        ray.init(address=address, **common)
    else:
        remove_stale_sessions()
        tmp = tempfile.mkdtemp(prefix=f"facetrust-ray-{os.getpid()}-")
        ray.init(num_cpus=int(cpus), _temp_dir=tmp, _node_ip_address="127.0.0.1", **common)
    try:
        yield ray
    finally:
        ray.shutdown()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_sessions(base: str | os.PathLike | None = None) -> list[Path]:
    """Remove the session folders of local Rays whose facetrust process is gone (a scan killed
    with SIGKILL cannot remove its own; Ray's processes end with it). Returns those removed."""
    removed = []
    for d in Path(base or tempfile.gettempdir()).glob("facetrust-ray-*-*"):
        try:
            pid = int(d.name.split("-")[2])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
            continue  # alive (or another user's: left alone)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        except PermissionError:
            continue
    return removed


# ---- the remote stages ----------------------------------------------------------------------
_PREPARERS: dict[bytes, Preparer] = {}  # one per Ray worker process and configuration


def _prepare_row(row: dict[str, Any], *, config: bytes) -> dict[str, Any]:
    """Ray Data ``map``: one file decoded and its faces found (a CPU task)."""
    preparer = _PREPARERS.get(config)
    if preparer is None:
        import cv2

        cv2.setNumThreads(1)
        contract, settings, frames, fps = pickle.loads(config)
        preparer = _PREPARERS[config] = Preparer(
            contract, settings, frames=frames, fps=fps, threads=1
        )
    info: FileInfo = pickle.loads(row["info"])
    return {"prepared": pickle.dumps(preparer(info), protocol=pickle.HIGHEST_PROTOCOL)}


class _Scorer:
    """Ray Data ``map_batches`` callable class: the model built once per actor; each call scores
    the faces of a batch of prepared files together and returns their records."""

    def __init__(self, config: bytes) -> None:
        model, sha, threads, kwargs = pickle.loads(config)
        threads = max(int(threads), 1)
        # the actor's share of the threads: ONNX Runtime reads it from the settings at load,
        # torch (imported only when it runs the model) is set after
        kwargs["settings"] = kwargs["settings"].model_copy(update={"threads": threads})
        self.model = ScanModel(model, **kwargs)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(threads)
        if self.model.sha256 != sha:
            raise ModelError(
                f"the Ray workers load model {self.model.name} ({self.model.sha256}), the "
                f"driver {sha}: install the same facetrust and checkpoint on every node"
            )

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        prepared = [pickle.loads(b) for b in batch["prepared"]]
        records = self.model.score(prepared)
        faces = [p.n_crops if p.error is None else 0 for p in prepared]
        blobs = np.empty(len(records), dtype=object)
        blobs[:] = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in records]
        return {"record": blobs, "faces": np.asarray(faces, np.int64)}


# ---- the driver -----------------------------------------------------------------------------
class RayScanner(Scanner):
    """A :class:`~facetrust.scan.scanner.Scanner` whose decoding, face finding and scoring run
    on Ray (``pip install 'facetrust[scale]'``).

    Args (beyond ``Scanner``'s):
        address: a Ray cluster (``auto``, ``ray://host:10001``); None starts a private local
            Ray with ``workers`` CPUs.
        workers: CPUs of the local Ray instance (default 2); ignored with ``address``.
        score_actors: scoring actors (each loads the model once).
        chunk_files: files handed to one Ray Data execution.
        files_per_batch: files scored together in one actor call (default: enough for about
            ``batch_size`` faces at one face per file, at most 64).

    The driver also loads the model (to name it in the store and to cut crops by its contract).
    """

    engine = "ray"

    def __init__(
        self,
        out: str | os.PathLike,
        *,
        address: str | None = None,
        workers: int | None = None,
        score_actors: int = 1,
        chunk_files: int = 4096,
        files_per_batch: int | None = None,
        **kwargs: Any,
    ) -> None:
        require("scale")  # before the model loads: one line, at once
        if workers is not None and workers < 1:
            raise InputError("--workers must be at least 1 with --engine ray")
        if score_actors < 1 or chunk_files < 1:
            raise InputError("score_actors and chunk_files must be at least 1")
        super().__init__(out, workers=0, **kwargs)
        self.address = address
        self.cpus = 2 if workers is None else int(workers)
        self.score_actors = int(score_actors)
        self.chunk_files = int(chunk_files)
        self.files_per_batch = int(files_per_batch or min(max(self.batch_size, 1), 64))
        self.engine_args.update(  # recorded in the scans row
            ray_address=address,
            ray_cpus=None if address else self.cpus,
            score_actors=self.score_actors,
            chunk_files=self.chunk_files,
            files_per_batch=self.files_per_batch,
        )
        # the actors load the model as the driver did, on the runtime it chose ("auto" resolved)
        self._model_args = dict(
            batch_size=self.batch_size, settings=self.settings, **self.model_args
        )
        runtime = getattr(self.model.detector, "runtime", None)
        if runtime is not None:
            self._model_args["runtime"] = runtime

    def __repr__(self) -> str:
        where = self.address or f"local Ray, {self.cpus} CPUs"
        return (
            f"RayScanner(out={str(self.out)!r}, model={self.model.name!r}, {where}, "
            f"score_actors={self.score_actors}, chunk_files={self.chunk_files}, "
            f"files_per_batch={self.files_per_batch}, retry_errors={self.retry_errors})"
        )

    def resources(self) -> tuple[float, float]:
        """CPUs asked for by (a prepare task, a scoring actor): one each, except on a local Ray
        with fewer CPUs than the actors plus one task, where they share its CPUs evenly, so the
        pipeline never waits for a CPU it cannot get (1 CPU, 1 actor: half each)."""
        if self.address is None:
            # floored to Ray's resource precision (1e-4), so the shares never add up past cpus
            share = min(1.0, math.floor(self.cpus / (self.score_actors + 1) * 1e4) / 1e4)
            return share, share
        return 1.0, 1.0

    def run(
        self, sources: Iterable[str | os.PathLike], *, stdin: TextIO | None = None
    ) -> ScanSummary:
        """Scan ``sources`` (folders, files, manifests, ``-`` for paths on ``stdin``) on Ray."""
        sources = check_sources(sources)
        total = count_sources(sources)
        if total == 0:
            raise InputError("no image or video files found in the given inputs")
        with ray_session(self.address, self.cpus) as ray, ResultsStore(self.out) as store:
            return _RayRun(self, store, sources, stdin, total, ray).go()


class _RayRun(_Run):
    """One run of the Ray engine: the local engine's decisions and writes, Ray's stages."""

    engine = "ray"

    def __init__(self, scanner: RayScanner, store, sources, stdin, total, ray) -> None:
        super().__init__(scanner, store, sources, stdin, total)
        self.ray = ray
        self.rs = scanner
        contract = self.model.contract
        self.prepare_config = pickle.dumps(
            (contract, scanner.settings, scanner.frames, scanner.fps)
        )
        task_cpus, actor_cpus = scanner.resources()
        self.task_cpus, self.actor_cpus = task_cpus, actor_cpus
        self.score_config = pickle.dumps(
            (scanner.model_ref, self.model.sha256, max(int(actor_cpus), 1), scanner._model_args)
        )
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)

    def go(self) -> ScanSummary:
        try:
            with ProgressBar(self.total, "scanning (ray)", enabled=self.s.progress) as self.bar:
                exhausted = False
                while not exhausted:
                    chunk: list[FileInfo] = []
                    while len(chunk) < self.rs.chunk_files:
                        path = next(self.paths, None)
                        if path is None:
                            exhausted = True
                            break
                        info = self._admit(path)
                        if info is not None:
                            chunk.append(info)
                        if len(self.to_write) >= 32:
                            self._flush()  # skipped, duplicate and error rows as they come
                    self._flush()
                    if chunk:
                        for records, faces in self._execute(chunk):
                            self._scored(records, faces)
                            self._flush()  # the copies released by these records
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            self.summary.seconds = time.perf_counter() - self.t0
            self.store.finish_scan(self.scan_id, self.summary.as_dict())
        return self.summary

    def _execute(self, chunk: list[FileInfo]) -> Iterator[tuple[list[FileRecord], int]]:
        """One Ray Data execution over ``chunk``: (records, faces scored) per scored batch."""
        ray = self.ray
        items = [{"info": pickle.dumps(i, protocol=pickle.HIGHEST_PROTOCOL)} for i in chunk]
        ds = (
            ray.data.from_items(items, override_num_blocks=len(items))
            .map(
                _prepare_row,
                fn_kwargs={"config": self.prepare_config},
                num_cpus=self.task_cpus,
                max_calls=DECODER_CALLS,
            )
            .map_batches(
                _Scorer,
                fn_constructor_kwargs={"config": self.score_config},
                batch_size=self.rs.files_per_batch,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=self.rs.score_actors),
                num_cpus=self.actor_cpus,
                num_gpus=1
                if str(self.rs._model_args.get("device") or "").startswith("cuda")
                else 0,
            )
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            records = [pickle.loads(b) for b in batch["record"]]
            yield records, int(batch["faces"].sum())
