"""Training configuration: one typed object, from YAML plus ``key.sub=value`` overrides.

The resolved config is saved as ``config.yaml`` next to every training output.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from facetrust.errors import InputError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    train_manifest: str
    val_manifest: str | None = None  # None: split val/calib off the training manifest
    test_manifest: str | None = None
    split_by: Literal["source", "video", "identity"] = "video"
    val_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    calib_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    leave_out: list[str] = []  # sources (or kinds) held out entirely as the test split
    sources: list[str] = []  # keep only these sources (empty: all)
    sbi_ratio: float = Field(0.0, ge=0.0, le=4.0)  # pseudo-fakes per real face
    sbi_only: bool = False  # train on reals + pseudo-fakes only (no real fakes)
    # pseudo-fake kinds and their ratios (facetrust.data.pseudo: sbi, splice, trace,
    # resynth); 0 = off
    pseudo_kinds: dict[str, float] = {"sbi": 1.0}
    # one random re-encode (downscale, JPEG, upscale) for every image whatever its label
    # (facetrust.data.normalise), so size, sharpness and codec cannot separate the classes
    normalise: bool = False
    normalise_scale: tuple[float, float] = (0.3, 0.5)
    # "balanced": class-balanced random sampling; "paired": batches of (real, fake) pairs of
    # one source (facetrust.data.sampling.PairedBatchSampler), pseudo-fake twins for reals
    sampler: Literal["balanced", "paired"] = "balanced"
    pseudo_fraction: float = Field(0.5, ge=0.0, le=1.0)  # paired: share of fakes made as twins
    balance: bool = True  # class-balanced sampling
    samples_per_epoch: int | None = Field(None, gt=0)  # None: one pass over the train rows
    max_rows: int | None = Field(None, gt=0)  # subsample the train manifest (quick runs)


class ModelConfig(_Strict):
    arch: str = "efficientnet_lite0"
    pretrained: bool = True
    input_size: int = Field(224, ge=32, le=1024)
    args: dict[str, Any] = {}
    # the crop contract the manifest's crops were cut with (`facetrust prepare --margin`,
    # `--crop-size`); a manifest that records another contract is refused. crop_size None:
    # whatever size the manifest records.
    margin: float = Field(0.2, ge=0.0, le=2.0)
    crop_size: int | None = Field(None, ge=8)
    # start from a trained facetrust checkpoint (a path or a shipped name such as
    # facetrust-default) instead of ImageNet weights: fine-tuning. Its arch must match.
    init_from: str | None = None


class OptimConfig(_Strict):
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["cosine", "plateau", "constant"] = "cosine"
    warmup_steps: int = Field(100, ge=0)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    grad_clip: float | None = Field(5.0, gt=0)
    ema: float = Field(0.0, ge=0.0, lt=1.0)  # 0 = off; e.g. 0.999
    amp: bool = True  # mixed precision: float16 on CUDA, bfloat16 on CPUs that compute it natively
    early_stopping: int = Field(0, ge=0)  # epochs without val improvement; 0 = off
    head_lr_scale: float = Field(1.0, gt=0)  # the classifier's lr = lr x this
    freeze: list[str] = []  # parameter-name prefixes kept frozen (e.g. "conv_stem", "blocks.0")


class LossConfig(_Strict):
    bce: float = Field(1.0, ge=0)
    kl: float = Field(0.0, ge=0)  # consistency between two views, or distillation if teacher
    supcon: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    temperature: float = Field(0.1, gt=0)  # supcon temperature
    teacher: str | None = None  # checkpoint to distil from (kl term)
    distill_temperature: float = Field(2.0, gt=0)


class AugConfig(_Strict):
    strength: float = Field(1.0, ge=0.0, le=2.0)


class FaultsConfig(_Strict):
    label_noise: float = Field(0.0, ge=0.0, le=1.0)
    input_noise: float = Field(0.0, ge=0.0)
    shuffle_labels: bool = False
    wrong_loss: bool = False
    zero_grad_every_n: int = Field(0, ge=0)
    random_weight_reset: float = Field(0.0, ge=0.0, le=1.0)  # probability per epoch (or step)
    reset_on: Literal["epoch", "step"] = "epoch"


class CalibConfig(_Strict):
    method: Literal["temperature", "platt", "isotonic", "none"] = "temperature"
    threshold_rule: str = "fpr:0.05"
    # fewest reals and fakes in the calib split a fitted method accepts (training refuses
    # to start below it); see facetrust.detect.calibration.MIN_PER_CLASS
    min_per_class: int = Field(20, ge=0)


class TrackingConfig(_Strict):
    mlflow: bool = False
    uri: str | None = None  # default: sqlite:///<output>/mlflow.db
    experiment: str = "facetrust"


class TrainConfig(_Strict):
    output: str = "runs/train"
    name: str | None = None  # the checkpoint's model name
    seed: int = 0
    device: str = "auto"
    threads: int | None = Field(None, gt=0)
    workers: int = Field(0, ge=0)  # DataLoader worker processes
    data: DataConfig
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()
    aug: AugConfig = AugConfig()
    faults: FaultsConfig = FaultsConfig()
    calibration: CalibConfig = CalibConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.data.sbi_only and self.data.sbi_ratio == 0:
            raise ValueError("data.sbi_only needs data.sbi_ratio > 0")
        return self


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``tree["a"]["b"] = value`` for ``dotted = "a.b"``, creating sections as needed."""
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise InputError(f"override {dotted}: {k} is not a section")
    node[keys[-1]] = value


def load_config(path: str | os.PathLike | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML config (or start empty) and apply ``key.sub=value`` overrides (YAML values)."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"config file not found: {p}")
        try:
            tree = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(tree, dict):
            raise InputError(f"{p}: the config must be a mapping")
    for item in overrides:
        if "=" not in item:
            raise InputError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        set_dotted(tree, key.strip(), value)
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        msg = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
        raise InputError(f"config: {where}: {msg}") from None


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return p
