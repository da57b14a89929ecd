"""Trained detectors shipped with facetrust, and resolving a model name or path to a file."""

from __future__ import annotations

from pathlib import Path

from facetrust.errors import ModelError, NoModelError

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MODEL = "facetrust-default"


def shipped_models() -> dict[str, Path]:
    """Names and files of the checkpoints shipped in ``facetrust/assets``."""
    return {p.stem: p for p in sorted(ASSETS.glob("*.safetensors"))}


def resolve_model(spec: str | Path | None) -> Path:
    """Turn ``None`` (the default model), a shipped model name or a checkpoint path into a file.

    Raises ``NoModelError`` when no trained model is installed or named, rather than falling back
    to untrained weights.
    """
    shipped = shipped_models()
    if spec is None or str(spec) == "":
        if DEFAULT_MODEL in shipped:
            return shipped[DEFAULT_MODEL]
        raise NoModelError(
            "no trained model is installed: pass --model PATH to a facetrust checkpoint "
            "(make one with `facetrust train`)"
        )
    text = str(spec)
    if text in shipped:
        return shipped[text]
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise ModelError(f"model path is not a file: {text}")
    names = ", ".join(shipped) or "none installed"
    raise ModelError(f"model {text!r} is neither a checkpoint file nor a shipped model ({names})")
