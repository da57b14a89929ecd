"""Finding media files: the one walker every command that takes folders uses."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from facetrust.media.sniff import IMAGE_SUFFIXES, VIDEO_SUFFIXES

__all__ = ["expand_inputs", "walk_media"]


def walk_media(root: str | os.PathLike, suffixes: Iterable[str] | None = None) -> Iterator[Path]:
    """Media files under ``root`` by suffix (images and videos by default), in sorted order;
    hidden files and folders (names starting with ``.``) are skipped."""
    wanted = (
        {s.lower() for s in suffixes} if suffixes is not None else (IMAGE_SUFFIXES | VIDEO_SUFFIXES)
    )
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in wanted:
                yield Path(dirpath) / name


def expand_inputs(
    paths: Iterable[str | os.PathLike], suffixes: Iterable[str] | None = None
) -> Iterator[Path]:
    """Files named directly (any extension: their content decides) and the media files under
    folders (:func:`walk_media`)."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from walk_media(p, suffixes)
        else:
            yield p
