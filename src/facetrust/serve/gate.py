"""The decode gate: decoded pixels in flight are bounded by a memory budget.

Every upload the service decodes (detect, explain, protect validation and protect jobs) first
takes a share of the gate sized from its header (width x height x bytes per pixel, or the video
frame budget), waits while the budget is spent, and gives it back when its work is done. Small
images pass side by side; a few large ones queue instead of multiplying the peak memory. A
wait longer than the request's deadline is a 503. After a large piece of work the freed heap
is handed back to the operating system (``malloc_trim`` on glibc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from facetrust.media.budget import DeadlineExceeded

__all__ = ["InferenceSlots", "MemoryGate", "release_memory", "upload_cost"]

log = logging.getLogger("facetrust.serve")

#: Bytes charged per decoded pixel: the decoder's buffer (up to 4 bytes a pixel), the RGB array
#: (3) and the working copies of the detector and the explainer.
BYTES_PER_PIXEL = 12
#: Below this a finished piece of work does not trim the heap.
TRIM_ABOVE = 64 * 1024**2


def upload_cost(
    data: bytes, analysis_max_pixels: int | None, video_bytes: int, max_pixels: int
) -> int:
    """Bytes to charge the gate for an upload, from its header alone."""
    from facetrust.media.image import image_size
    from facetrust.media.sniff import sniff_kind

    kind = sniff_kind(bytes(data[:64]))
    if kind == "video":
        # the sampled frames plus a few full frames in the decoder
        return int(video_bytes) + 64 * 1024**2
    size = image_size(data)
    pixels = size[0] * size[1] if size else 1_000_000
    pixels = min(pixels, max_pixels)
    cost = pixels * BYTES_PER_PIXEL
    if analysis_max_pixels is not None and pixels > analysis_max_pixels:
        # decoded at full size (or by JPEG's DCT scaling), then reduced for the analysis
        cost = pixels * 5 + analysis_max_pixels * BYTES_PER_PIXEL
    return max(cost, 1024**2)


class MemoryGate:
    """A counting gate over bytes: ``with gate.hold(n, timeout):`` waits until ``n`` fit."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = int(capacity)
        self.in_use = 0
        self.peak = 0
        self._cond = threading.Condition()

    def __repr__(self) -> str:
        return f"MemoryGate(capacity={self.capacity}, in_use={self.in_use})"

    @contextmanager
    def hold(self, cost: int, timeout: float | None = None) -> Iterator[int]:
        """Hold ``cost`` bytes (capped at the capacity, so one huge input runs alone)."""
        cost = max(1, min(int(cost), self.capacity))
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.in_use + cost > self.capacity:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise DeadlineExceeded(
                        "deadline exceeded: the server is busy decoding other uploads; retry later"
                    )
                self._cond.wait(left)
            self.in_use += cost
            self.peak = max(self.peak, self.in_use)
        try:
            yield cost
        finally:
            with self._cond:
                self.in_use -= cost
                self._cond.notify_all()
            if cost >= TRIM_ABOVE:
                release_memory()


@lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def release_memory() -> bool:
    """Give freed heap pages back to the operating system (glibc); False where unsupported."""
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)
    return True


class InferenceSlots:
    """Up to ``slots`` detections at once (``shared``), or one explanation alone
    (``exclusive``: Grad-CAM hooks the model that detection also runs).

    The face finder serialises itself; everything else in detection is safe to run side by side,
    so a long video no longer makes a photo wait for all of it. A waiting ``exclusive`` holder
    goes before new ``shared`` ones. ``with slots:`` takes a shared slot without a time limit.
    """

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = int(slots)
        self._shared = 0
        self._exclusive = False
        self._waiting_exclusive = 0
        self._cond = threading.Condition()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"InferenceSlots(slots={self.slots}, in_use={self._shared})"

    @contextmanager
    def shared(self, timeout: float | None = None) -> Iterator[None]:
        def free() -> bool:
            return not self._exclusive and not self._waiting_exclusive and self._shared < self.slots

        with self._cond:
            if not self._cond.wait_for(free, timeout):
                raise DeadlineExceeded("deadline exceeded: the server is busy; retry later")
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self, timeout: float | None = None) -> Iterator[None]:
        with self._cond:
            self._waiting_exclusive += 1
            try:
                ok = self._cond.wait_for(lambda: not self._exclusive and self._shared == 0, timeout)
            finally:
                self._waiting_exclusive -= 1
            if not ok:
                self._cond.notify_all()
                raise DeadlineExceeded("deadline exceeded: the server is busy; retry later")
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()

    def __enter__(self) -> None:
        held = self.shared()
        held.__enter__()
        self._local.__dict__.setdefault("held", []).append(held)

    def __exit__(self, *exc: object) -> None:
        self._local.held.pop().__exit__(*exc)
