"""Self-describing checkpoints: one ``.safetensors`` file, weights plus a JSON description.

The description (``CheckpointMeta``) sits in the safetensors header's ``__metadata__`` under the
key ``"facetrust"``: architecture and its arguments, input size, mean/std, face margin,
calibration, decision threshold, training data summary and metrics. Inference rebuilds the model
and its preprocessing from it alone. The header can be read without touching the weights.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from facetrust.errors import ModelError

if TYPE_CHECKING:  # torch is imported where weights are read or written, not to read metadata
    import torch
    from torch import nn

META_KEY = "facetrust"
FORMAT_VERSION = 1
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit
LEGACY_CROP_SIZE = 256  # the default crop side of `facetrust prepare`
# probabilities this close to the threshold are labelled "uncertain" (a calibrated 0.58-0.78
# around the default's 0.68 means the other label is right 22-42 % of the time)
DEFAULT_UNCERTAIN_BAND = 0.10


def _facetrust_version() -> str:
    try:
        return importlib.metadata.version("facetrust")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Calibration(BaseModel):
    """How a logit becomes a calibrated probability (``facetrust.detect.calibration``):

    ``none``: sigmoid(z); ``temperature``: sigmoid(z / temperature); ``platt``:
    sigmoid(a z + b); ``isotonic``: interp(sigmoid(z), x, y). Fits also record ``n``,
    ``nll_before`` and ``nll_after`` on their data.
    """

    model_config = ConfigDict(extra="allow")

    method: Literal["none", "temperature", "platt", "isotonic"] = "none"
    temperature: float | None = Field(None, gt=0)
    a: float | None = None
    b: float | None = None
    x: list[float] | None = None
    y: list[float] | None = None
    n: int | None = None
    nll_before: float | None = None
    nll_after: float | None = None

    @model_validator(mode="after")
    def _complete(self) -> Calibration:
        if self.method == "temperature" and self.temperature is None:
            raise ValueError("temperature calibration needs a positive 'temperature'")
        if self.method == "platt" and (self.a is None or self.b is None):
            raise ValueError("platt calibration needs 'a' and 'b'")
        if self.method == "isotonic":
            x, y = self.x or [], self.y or []
            if len(x) < 2 or len(x) != len(y) or any(b < a for a, b in zip(x, x[1:], strict=False)):
                raise ValueError("isotonic calibration needs increasing 'x' and matching 'y'")
        return self

    @model_serializer(mode="wrap")
    def _compact(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class FusionStack(BaseModel):
    """The logistic stack of a fused model: ``fused = inputs' logits @ weight + bias``."""

    model_config = ConfigDict(extra="allow")

    inputs: list[str] = Field(min_length=1)
    weight: list[float]
    bias: float
    fitted_on: str | None = None  # "calib" or "oof" (out-of-fold leave-one-kind-out)
    weights: str | None = None  # "learned" (logistic regression) or "equal" (spread-scaled mean)

    @model_validator(mode="after")
    def _one_weight_per_input(self) -> FusionStack:
        if len(self.weight) != len(self.inputs):
            raise ValueError("the fusion stack needs one weight per input")
        return self


class CheckpointMeta(BaseModel):
    """Everything needed to rebuild a detector and turn its logit into a decision."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    facetrust_version: str = Field(default_factory=_facetrust_version)
    arch: str
    arch_args: dict[str, Any] = {}
    input_size: int = Field(gt=0)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    face_margin: float = Field(0.2, ge=0.0, le=2.0)
    # the crop contract (with face_margin): the side of the aligned crops the model was trained
    # on; detection cuts crops this size and resizes them to input_size. None (older files):
    # the experts' crop_size, else 256 (what ``facetrust prepare`` cuts by default)
    crop_size: int | None = Field(None, ge=8)
    crop_alignment: str = "eyes-level-square"
    calibration: Calibration = Calibration()
    threshold: float = Field(0.5, ge=0.0, le=1.0)  # on the calibrated probability
    threshold_rule: str = "default 0.5 (uncalibrated)"
    # half-width (probability) of the band around the threshold labelled "uncertain"; None:
    # DEFAULT_UNCERTAIN_BAND. See ``uncertain_interval``.
    uncertain_band: float | None = Field(None, ge=0.0, le=0.5)
    # one line on what the model was not trained on (shown with every verdict); None: the
    # shipped models' line from their model card, else the training sources
    limits: str | None = Field(None, max_length=400)
    training_data: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    # frozen-feature experts fused with this CNN (see facetrust.detect.experts); empty = CNN only
    experts: dict[str, Any] = {}
    created: str = Field(default_factory=_now)  # ISO 8601
    name: str | None = None

    def uncertain_interval(self, threshold: float | None = None) -> tuple[float, float]:
        """The probabilities ``[low, high)`` labelled ``uncertain`` around ``threshold`` (the
        checkpoint's by default): ``uncertain_band`` (default ``DEFAULT_UNCERTAIN_BAND``) on
        each side, but never more than half the way from the threshold to 0 or to 1, so both
        ``real`` and ``fake`` stay reachable whatever the threshold."""
        t = self.threshold if threshold is None else float(threshold)
        w = DEFAULT_UNCERTAIN_BAND if self.uncertain_band is None else self.uncertain_band
        return max(t - w, t / 2), min(t + w, (1 + t) / 2)

    @property
    def fusion_inputs(self) -> list[str]:
        """The inputs of a fused model's stack (``["cnn", "clip", ...]``); ``[]`` for a model
        that is not fused."""
        return list(((self.experts or {}).get("fusion") or {}).get("inputs", []))

    def crop_side(self) -> int:
        """The side of the crops the model reads: ``crop_size``; for files written before it
        was recorded, the experts' ``crop_size``, else 256 (what ``facetrust prepare`` cuts
        by default)."""
        return int(self.crop_size or (self.experts or {}).get("crop_size", LEGACY_CROP_SIZE))

    @field_validator("experts")
    @classmethod
    def _experts_shape(cls, v: dict[str, Any]) -> dict[str, Any]:
        """A fused model's experts: a valid ``fusion`` stack, and an entry with a ``head``
        for every input but the CNN (what each expert reads is checked by its class)."""
        if not v:
            return v
        if "fusion" not in v:
            raise ValueError("experts without a 'fusion' stack")
        stack = FusionStack.model_validate(v["fusion"])
        for name in stack.inputs:
            if name != "cnn" and not isinstance(v.get(name), dict):
                raise ValueError(f"the fusion names expert {name!r} but the checkpoint lacks it")
        return v

    @classmethod
    def for_model(cls, model: nn.Module, **fields: Any) -> CheckpointMeta:
        """Meta for a model from ``create_model``: arch, arch_args, input size, mean/std filled in.

        ``fields`` override or add any other field.
        """
        from facetrust.models.registry import model_info

        arch = getattr(model, "facetrust_arch", None)
        if arch is None:
            raise ModelError("model was not built by create_model (no facetrust_arch)")
        info = model_info(arch)
        base: dict[str, Any] = {
            "arch": arch,
            "arch_args": dict(getattr(model, "facetrust_arch_args", {})),
            "input_size": info.input_size,
            "mean": info.mean,
            "std": info.std,
        }
        return cls(**{**base, **fields})


def _one_line(e: ValidationError) -> str:
    errs = e.errors()
    first = errs[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(root)"
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{loc}: {first['msg']}{more}"


def _plain(value: Any) -> Any:
    return value.model_dump() if isinstance(value, BaseModel) else value


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, meta: CheckpointMeta) -> Path:
    """Write ``model``'s weights and ``meta`` to ``path`` atomically; return the path.

    The file is written next to the target and moved over it with ``os.replace``, so an existing
    checkpoint is either kept whole or replaced whole.
    """
    from safetensors.torch import save_file

    path = Path(path)
    try:  # model_copy(update=...) does not validate: check the metadata as a whole here
        meta = CheckpointMeta.model_validate(
            {**dict(meta), "calibration": _plain(meta.calibration)}
        )
    except ValidationError as e:
        raise ModelError(f"invalid checkpoint metadata: {_one_line(e)}") from None
    arch = getattr(model, "facetrust_arch", None)
    if arch is not None and arch != meta.arch:
        raise ModelError(f"model is a {arch!r} but the metadata says {meta.arch!r}")
    built_with = getattr(model, "facetrust_arch_args", None)
    if built_with is not None and {"num_classes": 1, **meta.arch_args} != built_with:
        raise ModelError(
            f"model was built with {built_with} but the metadata says arch_args={meta.arch_args}"
        )
    try:
        header = json.dumps(meta.model_dump(mode="json"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ModelError(f"checkpoint metadata is not JSON-serialisable: {e}") from e
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    from facetrust.files import atomic_write

    try:
        return atomic_write(
            path,
            lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt", META_KEY: header}),
        )
    except OSError as e:
        raise ModelError(f"cannot write checkpoint {path}: {e}") from e


def _read_header(path: Path) -> dict[str, Any]:
    """The safetensors header of ``path`` as a dict; ``ModelError`` for every way it can fail."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ModelError(f"{path} is not a safetensors file (only {size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n == 0 or n > _MAX_HEADER:
                raise ModelError(f"{path} is not a safetensors file")
            raw = f.read(n)
    except FileNotFoundError:
        raise ModelError(f"checkpoint not found: {path}") from None
    except IsADirectoryError:
        raise ModelError(f"checkpoint path is a directory: {path}") from None
    except OSError as e:
        raise ModelError(f"cannot read checkpoint {path}: {e.strerror or e}") from e
    if not raw.startswith(b"{"):
        raise ModelError(f"{path} is not a safetensors file")
    if len(raw) < n:
        raise ModelError(f"{path} is truncated (header cut short)")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelError(f"{path} is not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path} is not a safetensors file (header is not a JSON object)")
    try:
        end = max(
            (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
            default=0,
        )
    except (TypeError, KeyError, IndexError, ValueError):
        raise ModelError(f"{path} is not a safetensors file (bad tensor entries)") from None
    if 8 + n + end > size:
        raise ModelError(f"{path} is truncated ({size} bytes, header promises {8 + n + end})")
    return header


def read_checkpoint_meta(path: str | os.PathLike[str]) -> CheckpointMeta:
    """Read a checkpoint's ``CheckpointMeta`` from its header only (the weights are not loaded)."""
    path = Path(path)
    header = _read_header(path)
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or META_KEY not in meta:
        raise ModelError(f"{path} is not a facetrust checkpoint (no '{META_KEY}' metadata)")
    try:
        doc = json.loads(meta[META_KEY])
    except (TypeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: facetrust metadata is not valid JSON ({e})") from None
    version = doc.get("format_version") if isinstance(doc, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ModelError(
            f"{path} has checkpoint format {version}; this facetrust "
            f"reads up to {FORMAT_VERSION}: upgrade facetrust"
        )
    try:
        return CheckpointMeta.model_validate(doc)
    except ValidationError as e:
        raise ModelError(f"{path}: invalid facetrust metadata: {_one_line(e)}") from None


def weights_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """One line on how ``state`` fails to fit ``model`` (keys, shapes), or None if it fits."""
    target = model.state_dict()
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    shapes = sorted(k for k in set(target) & set(state) if target[k].shape != state[k].shape)
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]!r})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})")
    if shapes:
        k = shapes[0]
        parts.append(
            f"{len(shapes)} of another shape (e.g. {k!r}: {tuple(state[k].shape)} "
            f"vs {tuple(target[k].shape)})"
        )
    return ", ".join(parts)


def load_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild the model described by ``path``, load its weights strictly; eval mode on ``device``.

    ``device`` is a torch device or a name as in ``facetrust.config.resolve_device`` ("auto" ...).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from facetrust.models.registry import create_model

    path = Path(path)
    meta = read_checkpoint_meta(path)
    try:
        model = create_model(meta.arch, **meta.arch_args)
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from e
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise ModelError(f"cannot read weights of {path}: {str(e).splitlines()[0]}") from e
    problem = weights_mismatch(model, state)
    if problem:
        raise ModelError(f"weights in {path} do not match architecture {meta.arch!r}: {problem}")
    model.load_state_dict(state, strict=True)
    if isinstance(device, str):
        from facetrust.config import resolve_device

        device = resolve_device(device)
    model.to(device)
    model.eval()
    return model, meta
