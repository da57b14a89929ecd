"""Optional parts of facetrust and the extras that install them.

``pip install facetrust`` gives detection, explanation and provenance. Training, protection,
the HTTP service and experiment tracking come with extras; using one without its extra raises
:class:`~facetrust.errors.MissingExtraError` with the command that installs it, in one line.
"""

from __future__ import annotations

import importlib.util

from facetrust.errors import MissingExtraError

__all__ = ["EXTRAS", "missing", "require"]

#: extra -> the modules it provides (import names)
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("albumentations", "sklearn", "matplotlib", "optuna"),
    "protect": ("kornia", "dlib", "face_recognition_models"),
    "serve": ("fastapi", "fastapi_offline", "uvicorn", "multipart"),
    "tracking": ("mlflow",),
    "scale": ("ray",),
}

_WHAT = {
    "train": "training, evaluation and fusion",
    "protect": "photo protection",
    "serve": "the HTTP service",
    "tracking": "MLflow tracking",
    "scale": "the Ray engine",
}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def require(extra: str) -> None:
    """Raise ``MissingExtraError`` naming the install command when ``extra`` is incomplete."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(
            f"{_WHAT[extra]} needs the '{extra}' extra ({', '.join(absent)} not installed): "
            f"pip install 'facetrust[{extra}]'"
        )
