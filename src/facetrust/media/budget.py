"""Work budgets: how much one input may cost, decided from its header before decoding.

A :class:`WorkBudget` bounds what one call may spend on one input, beyond the size limits of
:class:`~facetrust.media.ImageLimits`:

- ``max_aspect_ratio``: a very thin image (say 1 x 4,000,000 pixels) is refused from its header;
  it has no face to find, but tiling it for small faces would cost thousands of windows.
- ``max_windows``: the face finder's tiling is capped (finer levels are dropped first), so no
  image shape costs more than this many detector passes.
- ``analysis_max_pixels``: images above this are decoded at a reduced size (JPEG's DCT scaling,
  so the full image is never held; other formats are reduced right after decoding).
- ``max_video_decoded_bytes``: the RGB frames a video keeps, frames x width x height x 3; when
  the sampled frames would exceed it they are converted at a reduced size.
- ``max_video_decode_pixels``: every frame up to the last sampled one is decoded, so a video's
  decoding work is (frames decoded) x (pixels per frame), known after the demux-only pass;
  beyond it the video is refused before any frame is decoded.
- ``deadline``: a ``time.monotonic()`` instant after which the work stops with
  :class:`DeadlineExceeded` (checked between detector windows and between video frames).

The budget in force is per thread (a context variable): ``with use_budget(budget): ...``. Code
that runs outside any ``use_budget`` gets :func:`default_budget`, built once from
``facetrust.config.Settings`` (so ``FACETRUST_*`` variables configure the CLI and library too).
"""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from facetrust.errors import FacetrustError, InputError

__all__ = [
    "DeadlineExceeded",
    "WorkBudget",
    "check_deadline",
    "current_budget",
    "default_budget",
    "use_budget",
]


class DeadlineExceeded(FacetrustError):
    """The work on one input ran past its deadline (the service answers 503 + Retry-After)."""


@dataclass(frozen=True)
class WorkBudget:
    """What one input may cost; see the module docstring. ``None`` turns a bound off."""

    max_aspect_ratio: float | None = 1000.0
    max_windows: int = 256
    analysis_max_pixels: int | None = None
    max_video_decoded_bytes: int = 768 * 1024**2
    max_video_decode_pixels: int = 60_000_000_000
    deadline: float | None = None

    def __post_init__(self) -> None:
        if self.max_aspect_ratio is not None and not self.max_aspect_ratio >= 1.0:
            raise InputError("max_aspect_ratio must be at least 1")
        for name in ("max_windows", "max_video_decoded_bytes", "max_video_decode_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InputError(f"WorkBudget.{name} must be a positive int, got {value!r}")
        if self.analysis_max_pixels is not None and self.analysis_max_pixels <= 0:
            raise InputError("analysis_max_pixels must be positive")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> WorkBudget:
        """The budget described by a ``facetrust.config.Settings`` (fields of the same name)."""
        values = {
            name: getattr(settings, name)
            for name in (
                "max_aspect_ratio",
                "max_windows",
                "analysis_max_pixels",
                "max_video_decoded_bytes",
                "max_video_decode_pixels",
            )
            if hasattr(settings, name)
        }
        return cls(**{**values, **overrides})

    def with_timeout(self, seconds: float | None) -> WorkBudget:
        """A copy whose deadline is ``seconds`` from now (``None``: no deadline)."""
        deadline = None if seconds is None else time.monotonic() + float(seconds)
        return replace(self, deadline=deadline)

    def remaining(self) -> float:
        """Seconds left before the deadline (``inf`` without one)."""
        if self.deadline is None:
            return math.inf
        return self.deadline - time.monotonic()

    def check_aspect(self, width: int, height: int) -> None:
        """Raise MediaError for an image (or frame) thinner than ``max_aspect_ratio`` allows."""
        from facetrust.errors import MediaError

        if self.max_aspect_ratio is None or width <= 0 or height <= 0:
            return
        ratio = max(width, height) / min(width, height)
        if ratio > self.max_aspect_ratio:
            raise MediaError(
                f"image too thin: {width}x{height} has an aspect ratio of {ratio:,.0f}:1, "
                f"above the {self.max_aspect_ratio:g}:1 limit"
            )


_CURRENT: contextvars.ContextVar[WorkBudget | None] = contextvars.ContextVar(
    "facetrust_work_budget", default=None
)


@lru_cache(maxsize=1)
def default_budget() -> WorkBudget:
    """The budget from ``facetrust.config.Settings()`` (the ``FACETRUST_*`` environment)."""
    from facetrust.config import Settings

    return WorkBudget.from_settings(Settings())


def budget_in_force() -> WorkBudget | None:
    """The budget a caller set with :func:`use_budget` in this thread or task, if any."""
    return _CURRENT.get()


def current_budget() -> WorkBudget:
    """The budget in force in this thread or task."""
    return _CURRENT.get() or default_budget()


@contextmanager
def use_budget(budget: WorkBudget) -> Iterator[WorkBudget]:
    """Make ``budget`` the one in force for the code inside the ``with`` block."""
    if not isinstance(budget, WorkBudget):
        raise InputError(f"use_budget needs a WorkBudget, got {type(budget).__name__}")
    token = _CURRENT.set(budget)
    try:
        yield budget
    finally:
        _CURRENT.reset(token)


def check_deadline(what: str = "the work") -> None:
    """Raise :class:`DeadlineExceeded` when the budget in force has run out of time."""
    budget = _CURRENT.get()
    if budget is not None and budget.deadline is not None and time.monotonic() > budget.deadline:
        raise DeadlineExceeded(f"deadline exceeded: {what} took too long; retry later")
