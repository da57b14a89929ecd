"""Atomic file writes: the one helper every writer of results, manifests and checkpoints uses.

The content goes to a uniquely named temporary file beside the target, which then replaces the
target with ``os.replace``: a reader sees the old file whole or the new one whole, two writers
never share a temporary name, and a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text"]


def atomic_write(
    path: str | os.PathLike, write: Callable[[Path], Any], *, suffix: str = ".tmp"
) -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file, then move it onto ``path``.

    ``suffix`` ends the temporary name (some writers, e.g. ``np.savez``, need their own
    extension). The folder is created when missing. Returns ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the result is an ordinary file
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding=encoding))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))
