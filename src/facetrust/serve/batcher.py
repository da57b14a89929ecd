"""Micro-batching of face scoring across concurrent requests.

Each request decodes its upload and finds its faces in its own thread; the face crops then go to
one :class:`MicroBatcher`, whose worker thread takes the first waiting request's crops, gathers
those of the requests that arrive within ``max_wait_ms`` (up to ``max_faces`` crops), scores them
in **one** call of the scoring core (:class:`~facetrust.detect.scoring.FaceScorer` or its ONNX
twin) and hands each request its rows. Concurrent clients so share batches, and only one thread
runs the networks at a time (with facetrust's thread count), instead of one per request.

* Deadlines: a request waits for its rows no longer than its own deadline
  (:func:`~facetrust.media.budget.current_budget`); one that gives up is dropped from a batch not
  yet started, and raises ``DeadlineExceeded`` (503 + Retry-After). The batch itself runs outside
  any request's budget, so one request's deadline never fails the others'.
* Errors are isolated: when a batch raises, each of its requests is scored again on its own, so
  only the request whose crops fail gets the error.
* The batcher has the scorer's interface (``__call__``; every other attribute is the scorer's),
  so it replaces ``detector.scorer`` in place.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facetrust.detect.scoring import FaceScores
from facetrust.media.budget import DeadlineExceeded, current_budget

__all__ = ["MicroBatcher"]

log = logging.getLogger("facetrust.serve")


@dataclass(eq=False)
class _Request:
    crops: list[np.ndarray]
    done: threading.Event = field(default_factory=threading.Event)
    result: FaceScores | None = None
    error: BaseException | None = None
    abandoned: bool = False


class MicroBatcher:
    """Score the face crops of concurrent callers together (see the module docstring).

    Args:
        scorer: the scoring core (called with a list of crops, returns ``FaceScores``).
        max_faces: most crops in one batch (a request with more is scored alone).
        max_wait_ms: how long the first request of a batch waits for others to join.
    """

    def __init__(self, scorer: Any, *, max_faces: int = 32, max_wait_ms: float = 5.0) -> None:
        if max_faces < 1 or max_wait_ms < 0:
            raise ValueError("max_faces must be >= 1 and max_wait_ms >= 0")
        self.scorer = scorer
        self.max_faces = int(max_faces)
        self.max_wait_s = float(max_wait_ms) / 1000.0
        self.calls = 0  # scorer calls made (batches, plus retries after a failed batch)
        self.requests = 0  # requests scored
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._closed = False
        self._carry: _Request | None = None  # the worker's: a request left for the next batch

    def __repr__(self) -> str:
        return (
            f"MicroBatcher({self.scorer!r}, max_faces={self.max_faces}, "
            f"max_wait_ms={self.max_wait_s * 1000:g})"
        )

    def __getattr__(self, name: str) -> Any:  # inputs, contract, meta, model, columns...
        if name == "scorer":
            raise AttributeError(name)
        return getattr(self.scorer, name)

    # ---- callers -------------------------------------------------------------------------
    def __call__(self, crops: list[np.ndarray]) -> FaceScores:
        """Scores of ``crops``, computed in a batch shared with concurrent callers."""
        crops = list(crops)
        if not crops:
            return FaceScores.empty(self.scorer.inputs)
        request = _Request(crops)
        self._start()
        self._queue.put(request)
        remaining = current_budget().remaining()
        if not request.done.wait(None if remaining == float("inf") else max(0.0, remaining)):
            request.abandoned = True  # skipped if its batch has not started
            raise DeadlineExceeded("deadline exceeded: scoring faces took too long; retry later")
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def close(self) -> None:
        """Stop the worker after the requests already queued."""
        with self._lock:
            self._closed = True
            worker = self._worker
        if worker is not None:
            self._queue.put(None)
            worker.join(timeout=30)

    # ---- the worker ----------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the micro-batcher is closed")
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._loop, name="facetrust-batcher", daemon=True
                )
                self._worker.start()

    def _collect(self, first: _Request) -> tuple[list[_Request], bool]:
        """``first`` and the requests that join it in time; True when told to stop. A request
        that would overflow the batch starts the next one."""
        batch, n = [first], len(first.crops)
        end = time.monotonic() + self.max_wait_s
        while n < self.max_faces:
            wait = end - time.monotonic()
            try:
                nxt = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                return batch, True
            if n + len(nxt.crops) > self.max_faces:
                self._carry = nxt
                break
            batch.append(nxt)
            n += len(nxt.crops)
        return batch, False

    def _loop(self) -> None:
        while True:
            first, self._carry = self._carry, None
            if first is None:
                first = self._queue.get()
                if first is None:
                    return
            batch, stop = self._collect(first)
            self._score(batch)
            if stop:
                if self._carry is not None:
                    self._score([self._carry])
                return

    def _score(self, batch: list[_Request]) -> None:
        live = [r for r in batch if not r.abandoned]
        if not live:
            return
        try:
            self.calls += 1
            scores = self.scorer([c for r in live for c in r.crops])
            k = 0
            for r in live:
                r.result = _rows(scores, k, len(r.crops))
                k += len(r.crops)
        except Exception:
            if len(live) == 1:
                live[0].error = _current_error()
            else:  # isolate the failure: each request on its own
                log.warning("a micro-batch failed; scoring its %d requests one by one", len(live))
                for r in live:
                    try:
                        self.calls += 1
                        r.result = self.scorer(r.crops)
                    except Exception as e:
                        r.error = e
        finally:
            self.requests += len(live)
            for r in live:
                if r.result is None and r.error is None:
                    r.error = RuntimeError("the micro-batch produced no result")
                r.done.set()


def _current_error() -> BaseException:
    import sys

    return sys.exc_info()[1] or RuntimeError("scoring failed")


def _rows(scores: FaceScores, start: int, n: int) -> FaceScores:
    s = slice(start, start + n)
    return FaceScores(list(scores.inputs), scores.logits[s], scores.fused[s], scores.probability[s])
