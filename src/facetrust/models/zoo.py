"""Trained detectors shipped with facetrust, and resolving a model name or path to a file."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

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


def configured_model(spec: str | Path | None, settings=None) -> Path:
    """:func:`resolve_model` of ``spec``, or when it is ``None`` of the configured model
    (``settings.model``; with no ``settings``, ``FACETRUST_MODEL``), else the default: how every
    command and class that takes ``--model`` / ``model=`` finds its file."""
    if spec is None:
        from facetrust.config import Settings

        spec = (settings or Settings()).model
    return resolve_model(spec)


class ShippedModel(BaseModel):
    """A model shipped with facetrust: what it is and its headline figures (from its metadata;
    the model card beside it, ``assets/MODEL_CARD.md``, has the rest)."""

    name: str
    path: str
    arch: str
    experts: list[str]
    size_mb: float
    input_size: int
    crop_size: int | None
    threshold: float
    val_auc: float | None = None  # held-out faces of the training sources (in-distribution)
    val_ece: float | None = None
    card: str


def list_models() -> list[ShippedModel]:
    """The shipped models with architecture, size, threshold and headline figures."""
    from facetrust.models.checkpoint import read_checkpoint_meta

    out = []
    for name, path in shipped_models().items():
        meta = read_checkpoint_meta(path)
        face = (meta.metrics.get("val") or {}).get("face") or {}
        out.append(
            ShippedModel(
                name=name,
                path=str(path),
                arch=meta.arch,
                experts=meta.fusion_inputs or ["cnn"],
                size_mb=round(path.stat().st_size / 1e6, 1),
                input_size=meta.input_size,
                crop_size=meta.crop_side(),
                threshold=round(meta.threshold, 4),
                val_auc=None if face.get("auc") is None else round(face["auc"], 3),
                val_ece=None if face.get("ece") is None else round(face["ece"], 3),
                card=str(ASSETS / "MODEL_CARD.md"),
            )
        )
    return out
