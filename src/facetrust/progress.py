"""Progress on stderr: the one progress bar of every long command (detect, prepare, train,
protect, explain, scan). Shown only on a terminal unless asked; never on stdout, so JSON
output stays clean."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["ProgressBar", "track"]

T = TypeVar("T")


class ProgressBar:
    """A transient rich bar on stderr with a done/total count, rate, time left and optional
    stats; a no-op when disabled. ``enabled=None`` shows it when stderr is a terminal.

    >>> with ProgressBar(10, "faces") as bar:
    ...     bar.advance(loss=0.3)
    """

    def __init__(self, total: int | None, title: str, *, enabled: bool | None = None) -> None:
        self.total, self.title = total, title
        self.enabled = sys.stderr.isatty() if enabled is None else bool(enabled)
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.title, total=self.total, stats="")
        return self

    def advance(self, n: int = 1, **stats: float | str) -> None:
        if self._bar is not None:
            text = " ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items()
            )
            self._bar.update(self._task, advance=n, stats=text)

    __call__ = advance

    def set(self, completed: float, description: str | None = None) -> None:
        """Move the bar to ``completed`` (of ``total``), optionally with a new description."""
        if self._bar is not None:
            fields = {} if description is None else {"description": description}
            self._bar.update(self._task, completed=completed, **fields)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def track(
    items: Iterable[T], title: str, *, total: int | None = None, enabled: bool | None = None
) -> Iterator[T]:
    """Yield ``items``, advancing a :class:`ProgressBar` after each."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with ProgressBar(total, title, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.advance()
