"""facetrust: find deepfaked faces in images and video, with calibrated probabilities; protect
your own photos.

The public surface, one hop away (importing ``facetrust`` stays cheap: each name is imported on
first use)::

    from facetrust import Detector, Explainer          # detection (the core install)
    from facetrust import Protector                    # the `protect` extra
    from facetrust import Trainer, prepare, evaluate, fuse, tune   # the `train` extra
    from facetrust import Adapter                                  # the `train` extra
    from facetrust import Scanner, ResultsStore                    # resumable scans (core)
    from facetrust import list_models, create_model, load_checkpoint
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("facetrust")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each name loads lazily
    from facetrust.config import Settings, apply_threads
    from facetrust.data.prepare import prepare
    from facetrust.detect import Detector, FaceResult, FileResult, FramePrediction
    from facetrust.detect.explain import Explainer, Explanation
    from facetrust.errors import (
        FacetrustError,
        InputError,
        MediaError,
        MissingExtraError,
        ModelError,
        NoModelError,
    )
    from facetrust.faces import CropContract, Face, FaceAligner, FaceDetector
    from facetrust.models import create_model, list_architectures, list_models, load_checkpoint
    from facetrust.protect import Protector
    from facetrust.provenance import read_provenance
    from facetrust.scan import ResultsStore, Scanner
    from facetrust.train.adapt import Adapter
    from facetrust.train.evaluate import evaluate_checkpoint as evaluate
    from facetrust.train.fusion import run_fusion as fuse
    from facetrust.train.loop import Trainer
    from facetrust.train.tune import tune

# public name -> (module, attribute)
_LAZY: dict[str, tuple[str, str]] = {
    "Detector": ("facetrust.detect", "Detector"),
    "FaceResult": ("facetrust.detect", "FaceResult"),
    "FileResult": ("facetrust.detect", "FileResult"),
    "FramePrediction": ("facetrust.detect", "FramePrediction"),
    "Explainer": ("facetrust.detect.explain", "Explainer"),
    "Explanation": ("facetrust.detect.explain", "Explanation"),
    "Protector": ("facetrust.protect", "Protector"),
    "Trainer": ("facetrust.train.loop", "Trainer"),
    "Adapter": ("facetrust.train.adapt", "Adapter"),
    "prepare": ("facetrust.data.prepare", "prepare"),
    "evaluate": ("facetrust.train.evaluate", "evaluate_checkpoint"),
    "fuse": ("facetrust.train.fusion", "run_fusion"),
    "tune": ("facetrust.train.tune", "tune"),
    "read_provenance": ("facetrust.provenance", "read_provenance"),
    "Scanner": ("facetrust.scan", "Scanner"),
    "ResultsStore": ("facetrust.scan", "ResultsStore"),
    "list_models": ("facetrust.models", "list_models"),
    "list_architectures": ("facetrust.models", "list_architectures"),
    "create_model": ("facetrust.models", "create_model"),
    "load_checkpoint": ("facetrust.models", "load_checkpoint"),
    "Face": ("facetrust.faces", "Face"),
    "FaceAligner": ("facetrust.faces", "FaceAligner"),
    "FaceDetector": ("facetrust.faces", "FaceDetector"),
    "CropContract": ("facetrust.faces", "CropContract"),
    "Settings": ("facetrust.config", "Settings"),
    "apply_threads": ("facetrust.config", "apply_threads"),
    "FacetrustError": ("facetrust.errors", "FacetrustError"),
    "InputError": ("facetrust.errors", "InputError"),
    "MediaError": ("facetrust.errors", "MediaError"),
    "MissingExtraError": ("facetrust.errors", "MissingExtraError"),
    "ModelError": ("facetrust.errors", "ModelError"),
    "NoModelError": ("facetrust.errors", "NoModelError"),
}

__all__ = [
    "Adapter",
    "CropContract",
    "Detector",
    "Explainer",
    "Explanation",
    "Face",
    "FaceAligner",
    "FaceDetector",
    "FaceResult",
    "FacetrustError",
    "FileResult",
    "FramePrediction",
    "InputError",
    "MediaError",
    "MissingExtraError",
    "ModelError",
    "NoModelError",
    "Protector",
    "ResultsStore",
    "Scanner",
    "Settings",
    "Trainer",
    "apply_threads",
    "create_model",
    "evaluate",
    "fuse",
    "list_architectures",
    "list_models",
    "load_checkpoint",
    "prepare",
    "read_provenance",
    "tune",
    "__version__",
]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'facetrust' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # next time, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
