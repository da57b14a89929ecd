"""What a scan reads: folders (recursive), files, manifests (JSONL with a ``path`` field, or CSV
with a ``path`` column) and ``-`` (paths on stdin, one a line). Paths come lazily, so a tree of a
million files is never held in memory.

A file named directly is a manifest when its suffix is ``.jsonl``, ``.ndjson`` or ``.csv`` and its
content is not an image or video; paths in a manifest are absolute or relative to its folder.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from facetrust.errors import InputError, one_line
from facetrust.media.sniff import HEAD_BYTES, sniff_kind
from facetrust.media.walk import walk_media

__all__ = ["MANIFEST_SUFFIXES", "count_sources", "iter_sources"]

MANIFEST_SUFFIXES = frozenset({".jsonl", ".ndjson", ".csv"})
STDIN = "-"


def is_manifest(path: Path) -> bool:
    """A ``.jsonl``/``.ndjson``/``.csv`` file whose first bytes are no image or video."""
    if path.suffix.lower() not in MANIFEST_SUFFIXES or not path.is_file():
        return False
    with open(path, "rb") as f:
        return sniff_kind(f.read(HEAD_BYTES)) is None


def check_sources(sources: Iterable[str | os.PathLike]) -> list[str]:
    """The sources as text; ``InputError`` naming those that do not exist (``-`` is stdin)."""
    out = [os.fspath(s) for s in sources]
    if not out:
        raise InputError("no inputs: give folders, files, manifests or - (paths on stdin)")
    missing = [s for s in out if s != STDIN and not os.path.exists(s)]
    if missing:
        raise InputError(
            f"not found: {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")
        )
    if out.count(STDIN) > 1:
        raise InputError("- (stdin) may be given once")
    return out


def iter_sources(
    sources: Iterable[str | os.PathLike], stdin: TextIO | None = None
) -> Iterator[str]:
    """Every file path the sources name, in order (folders walked for media files by suffix;
    files named directly, in manifests or on stdin, whatever their suffix)."""
    for src in sources:
        s = os.fspath(src)
        if s == STDIN:
            yield from _lines(stdin if stdin is not None else sys.stdin)
            continue
        p = Path(s)
        if p.is_dir():
            yield from (str(f) for f in walk_media(p))
        elif is_manifest(p):
            yield from _manifest(p)
        else:
            yield s


def count_sources(sources: Iterable[str | os.PathLike]) -> int | None:
    """How many paths :func:`iter_sources` will give (None when stdin is among them)."""
    sources = [os.fspath(s) for s in sources]
    if STDIN in sources:
        return None
    return sum(1 for _ in iter_sources(sources))


def _lines(stream: TextIO) -> Iterator[str]:
    for line in stream:
        line = line.rstrip("\r\n")
        if line.strip():
            yield line


def _manifest(path: Path) -> Iterator[str]:
    base = path.resolve().parent
    rows = _csv_paths(path) if path.suffix.lower() == ".csv" else _jsonl_paths(path)
    for p in rows:
        q = Path(p)
        yield str(q if q.is_absolute() else base / q)


def _jsonl_paths(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not JSON ({one_line(e)})") from None
            if not isinstance(row, dict) or not isinstance(row.get("path"), str):
                raise InputError(f"{path}:{n}: a manifest row needs a text 'path' field")
            yield row["path"]


def _csv_paths(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise InputError(f"{path}: a CSV manifest needs a 'path' column")
        for row in reader:
            if row.get("path"):
                yield row["path"]
