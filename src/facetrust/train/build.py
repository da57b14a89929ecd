"""Building a training run from its config: data, model, optimiser, loss. Small functions the
:class:`~facetrust.train.loop.Trainer` calls in order; each can be used (and tested) alone."""

from __future__ import annotations

import contextlib
import copy
import math
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from facetrust.data.manifest import ManifestRow, manifest_contract, read_manifest
from facetrust.errors import InputError
from facetrust.faces.align import ALIGNMENT, CropContract
from facetrust.models.clip import cpu_bf16
from facetrust.models.layout import channels_last
from facetrust.train.config import TrainConfig
from facetrust.train.datasets import FaceCropDataset, balanced_weights

__all__ = [
    "EMA",
    "MAX_PASSES_PER_EPOCH",
    "Objective",
    "Optimisation",
    "TrainData",
    "build_data",
    "build_model",
    "build_objective",
    "build_optimisation",
    "checkpoint_name",
    "crop_contract_for",
    "logits_and_embedding",
    "manifest_for",
    "select_rows",
]

# an epoch that repeats the training rows more often than this is probably a mistake
MAX_PASSES_PER_EPOCH = 20


def _derived_seed(*keys: int) -> int:
    """A 63-bit seed from integers (the run's seed, an epoch, a purpose)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] >> 1)


# ---------------------------------------------------------------- rows and splits ----------
def select_rows(cfg: TrainConfig) -> dict[str, list[ManifestRow]]:
    """Split the manifest into train / val / calib (and test for held-out sources)."""
    from facetrust.data.splits import group_split

    d = cfg.data
    rows = [r for r in read_manifest(d.train_manifest) if r.crop]
    if d.sources:
        rows = [r for r in rows if r.source in set(d.sources)]
    if not rows:
        raise InputError(f"{d.train_manifest}: no rows with face crops (run `facetrust prepare`)")
    splits: dict[str, list[ManifestRow]] = {"test": []}
    if d.leave_out:
        held = set(d.leave_out)
        known = {r.source for r in rows} | {r.kind for r in rows if r.kind}
        unknown = held - known
        if unknown:
            raise InputError(f"leave_out names no source or kind: {sorted(unknown)}")
        splits["test"] = [r for r in rows if r.source in held or (r.kind in held)]
        rows = [r for r in rows if not (r.source in held or r.kind in held)]
    if d.max_rows and len(rows) > d.max_rows:
        rows = random.Random(cfg.seed).sample(rows, d.max_rows)
    preset = {r.split for r in rows}
    if d.val_manifest:
        val = [r for r in read_manifest(d.val_manifest) if r.crop]
        splits.update(_split_val_calib(val, cfg))
        splits["train"] = rows
    elif preset & {"val", "validation"} and preset & {"train"}:
        splits["train"] = [r for r in rows if r.split == "train"]
        val = [r for r in rows if r.split in ("val", "validation")]
        splits.update(_split_val_calib(val, cfg))
        splits["test"] += [r for r in rows if r.split == "test"]
    else:
        v, c = d.val_fraction, d.calib_fraction
        parts = group_split(
            rows,
            by=d.split_by,
            fractions=(1 - v - c, v, c),
            names=("train", "val", "calib"),
            seed=cfg.seed,
        )
        splits.update(parts)
    if d.test_manifest:
        splits["test"] += [r for r in read_manifest(d.test_manifest) if r.crop]
    for name in ("train", "val"):
        if not splits.get(name):
            raise InputError(f"the {name} split is empty: add data or change the split settings")
    if not splits.get("calib"):
        splits["calib"] = splits["val"]
    return splits


def _split_val_calib(val: list[ManifestRow], cfg: TrainConfig) -> dict[str, list[ManifestRow]]:
    from facetrust.data.splits import group_split

    if cfg.data.calib_fraction == 0 or len(val) < 4:
        return {"val": val, "calib": val}
    parts = group_split(
        val,
        by=cfg.data.split_by,
        fractions=(0.5, 0.5, 0.0),
        names=("val", "calib", "none"),
        seed=cfg.seed,
    )
    return {"val": parts["val"], "calib": parts["calib"]}


def manifest_for(cfg: TrainConfig, split: str) -> str:
    """The manifest a split's crop paths are relative to."""
    if split in ("val", "calib") and cfg.data.val_manifest:
        return cfg.data.val_manifest
    return cfg.data.train_manifest


def crop_contract_for(cfg: TrainConfig) -> CropContract | None:
    """The crop contract of the config's manifests, checked against ``model.margin`` and
    ``model.crop_size``: a difference is an ``InputError`` naming both values.

    Manifests written before contracts were recorded say nothing: then the config's
    ``model.margin`` and ``model.crop_size`` are taken on trust (``None`` without a crop size).
    """
    d, m = cfg.data, cfg.model
    found: dict[str, tuple[int, float, str]] = {}
    for path in dict.fromkeys(p for p in (d.train_manifest, d.val_manifest, d.test_manifest) if p):
        c = manifest_contract(read_manifest(path))
        if c is not None:
            found[path] = c
    if len(set(found.values())) > 1:
        (p1, c1), (p2, c2) = list(found.items())[:2]
        raise InputError(
            f"the manifests' crops were cut differently: {p1} {c1[0]} px margin {c1[1]:g}, "
            f"{p2} {c2[0]} px margin {c2[1]:g}; prepare them alike"
        )
    if not found:
        return CropContract(m.crop_size, m.margin) if m.crop_size else None
    path, (size, margin, alignment) = next(iter(found.items()))
    margin = m.margin if margin is None else float(margin)
    if not math.isclose(margin, m.margin, abs_tol=1e-9):
        raise InputError(
            f"{path} holds crops cut with margin {margin:g}, the config says model.margin="
            f"{m.margin:g}: set model.margin to {margin:g} or prepare again with --margin "
            f"{m.margin:g}"
        )
    if m.crop_size is not None and int(size) != m.crop_size:
        raise InputError(
            f"{path} holds {size} px crops, the config says model.crop_size={m.crop_size}: "
            f"set model.crop_size to {size} or prepare again with --crop-size {m.crop_size}"
        )
    return CropContract(int(size), float(margin), alignment or ALIGNMENT)


def checkpoint_name(cfg: TrainConfig) -> str:
    """The name a trained checkpoint carries: the config's ``name`` unless it is a shipped
    model's name (a custom model never reports itself as a shipped one), else the run's
    output folder name."""
    from facetrust.models.zoo import shipped_models

    run = Path(cfg.output).resolve().name or "facetrust-run"
    if cfg.name and cfg.name not in shipped_models():
        return cfg.name
    if cfg.name:
        warnings.warn(
            f"name {cfg.name!r} is a shipped model's name; the checkpoint is named {run!r} "
            "(its output folder)",
            UserWarning,
            stacklevel=3,
        )
    return run


# ---------------------------------------------------------------- data ---------------------
@dataclass
class TrainData:
    """The splits, the training dataset and its loader, and the crop contract."""

    splits: dict[str, list[ManifestRow]]
    dataset: FaceCropDataset
    loader: DataLoader
    generator: torch.Generator  # the sampler's; reseeded at each epoch's start
    steps_per_epoch: int
    contract: CropContract | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    seed: int
    sampler: Any = None  # a batch sampler with set_epoch (data.sampler=paired)

    def start_epoch(self, epoch: int) -> None:
        """Reseed the sampler and the augmentations from (seed, epoch): an epoch draws the same
        batches and augmentations whether the run was resumed before it or not."""
        self.generator.manual_seed(_derived_seed(self.seed, epoch, 1))
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        reseed = getattr(self.dataset.transform, "reseed", None)
        if reseed is not None:
            reseed(_derived_seed(self.seed, epoch, 2))

    def summary(self) -> dict[str, Any]:
        """Per split, per source: real / fake counts; the train split counts what was trained on
        (no fakes under ``sbi_only``) and the pseudo-fakes (``sbi``)."""
        out: dict[str, Any] = {}
        for name, rows in self.splits.items():
            if name == "train":
                rows = self.dataset.rows
            if not rows:
                continue
            per: dict[str, dict[str, int]] = {}
            for r in rows:
                per.setdefault(r.source, {"real": 0, "fake": 0})[r.label] += 1
            if name == "train" and self.dataset.num_sbi:
                per["sbi"] = {"real": 0, "fake": self.dataset.num_sbi}
            out[name] = per
        return out


def build_data(cfg: TrainConfig, splits: dict[str, list[ManifestRow]] | None = None) -> TrainData:
    """Rows, splits, crop contract, the augmented training set and its class-balanced loader."""
    from facetrust.data.transforms import train_transform
    from facetrust.models import model_info

    contract = crop_contract_for(cfg)
    splits = splits if splits is not None else select_rows(cfg)
    info = model_info(cfg.model.arch)
    d = cfg.data
    dataset = FaceCropDataset(
        splits["train"],
        d.train_manifest,
        train_transform(cfg.model.input_size, cfg.aug.strength, seed=cfg.seed),
        info.mean,
        info.std,
        sbi_ratio=0.0 if d.sampler == "paired" else d.sbi_ratio,
        sbi_only=d.sbi_only,
        two_views=cfg.loss.kl > 0 and cfg.loss.teacher is None,
        pseudo=_pseudo_mix(d.pseudo_kinds),
        normaliser=_normaliser(d) if d.normalise else None,
    )
    if d.sampler == "paired":
        return _paired_data(cfg, splits, dataset, contract, info)
    if len(np.unique(dataset.labels)) < 2:
        raise InputError("the training split has one class only: add fakes or set sbi_ratio")
    n_per_epoch = d.samples_per_epoch or len(dataset)
    passes = n_per_epoch / len(dataset)
    if passes > MAX_PASSES_PER_EPOCH:
        warnings.warn(
            f"data.samples_per_epoch={n_per_epoch} repeats the {len(dataset)} training items "
            f"{passes:.0f} times per epoch; leave it unset for one pass per epoch",
            UserWarning,
            stacklevel=2,
        )
    bs = cfg.optim.batch_size
    steps = max(1, n_per_epoch // bs)
    generator = torch.Generator().manual_seed(_derived_seed(cfg.seed, 0, 1))
    weights = (
        balanced_weights(dataset.labels)
        if d.balance
        else torch.ones(len(dataset), dtype=torch.double)
    )
    sampler = WeightedRandomSampler(
        weights, num_samples=steps * bs, replacement=True, generator=generator
    )
    loader = DataLoader(
        dataset,
        batch_size=bs,
        sampler=sampler,
        drop_last=True,
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
        generator=generator,  # worker seeds come from it, not from the global RNG
    )
    return TrainData(
        splits=splits,
        dataset=dataset,
        loader=loader,
        generator=generator,
        steps_per_epoch=steps,
        contract=contract,
        mean=tuple(info.mean),
        std=tuple(info.std),
        seed=cfg.seed,
    )


def _pseudo_mix(kinds: dict[str, float]):
    from facetrust.data.pseudo import PseudoFakeMix

    return PseudoFakeMix(kinds)  # InputError naming the registered kinds if one is unknown


def _normaliser(d):
    from facetrust.data.normalise import Normaliser

    return Normaliser(size=None, scale=tuple(d.normalise_scale))


def _paired_data(cfg: TrainConfig, splits, dataset: FaceCropDataset, contract, info) -> TrainData:
    """Batches of (real, fake) pairs of one source (pseudo-fake twins for reals), as
    :class:`~facetrust.data.sampling.PairedBatchSampler` draws them; one epoch is its pairs."""
    from facetrust.data.sampling import PairedBatchSampler

    d = cfg.data

    def paired(weights: dict[str, float] | None = None) -> PairedBatchSampler:
        return PairedBatchSampler(
            dataset.rows,
            cfg.optim.batch_size,
            pseudo_fraction=d.pseudo_fraction,
            source_weights=weights,
            drop_last=True,
            seed=cfg.seed,
        )

    sampler = paired()
    if d.samples_per_epoch and len(sampler):
        # every source's pairs scaled alike, so the epoch holds about samples_per_epoch items
        # and the sources keep their shares
        scale = d.samples_per_epoch / (len(sampler) * cfg.optim.batch_size)
        sampler = paired({s: scale for s in {r.source for r in dataset.rows}})
    if len(sampler) == 0:
        raise InputError("too few rows for one batch of (real, fake) pairs: lower the batch size")
    generator = torch.Generator().manual_seed(_derived_seed(cfg.seed, 0, 1))
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
        generator=generator,
    )
    return TrainData(
        splits=splits,
        dataset=dataset,
        loader=loader,
        generator=generator,
        steps_per_epoch=len(sampler),
        contract=contract,
        mean=tuple(info.mean),
        std=tuple(info.std),
        seed=cfg.seed,
        sampler=sampler,
    )


# ---------------------------------------------------------------- model --------------------
def build_model(cfg: TrainConfig, device: str, *, init_from: bool = True) -> torch.nn.Module:
    """The registry's model, initialised from ``cfg.seed`` (the global RNG is left as it was),
    ImageNet or ``model.init_from`` weights, frozen prefixes, on ``device``."""
    from facetrust.models import create_model

    imagenet = cfg.model.pretrained and not cfg.model.init_from  # init_from replaces them
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = create_model(cfg.model.arch, pretrained=imagenet, **cfg.model.args)
    if cfg.model.init_from and init_from:
        _init_from_checkpoint(model, cfg)
    for name, p in model.named_parameters():
        if any(name.startswith(prefix) for prefix in cfg.optim.freeze):
            p.requires_grad_(False)
    return channels_last(model.to(device), device)


def _init_from_checkpoint(model: torch.nn.Module, cfg: TrainConfig) -> None:
    """Load the weights of ``cfg.model.init_from`` (a checkpoint path or shipped name)."""
    from facetrust.models import load_checkpoint
    from facetrust.models.checkpoint import weights_mismatch
    from facetrust.models.zoo import resolve_model

    path = resolve_model(cfg.model.init_from)
    src, meta = load_checkpoint(path, device="cpu")
    if meta.arch != cfg.model.arch:
        raise InputError(
            f"model.init_from {path} holds {meta.arch} weights; the config trains {cfg.model.arch}"
        )
    state = src.state_dict()
    problem = weights_mismatch(model, state)
    if problem:  # same arch, other arguments (attention width, classes ...)
        raise InputError(f"model.init_from {path} does not fit model.args: {problem}")
    model.load_state_dict(state, strict=True)


def logits_and_embedding(model: torch.nn.Module, x: torch.Tensor):
    """``(logits [B], pooled embedding [B, D])`` from any registered model."""
    feats = model.forward_features(x)
    emb = feats.mean(dim=(2, 3)) if feats.ndim == 4 else feats
    logits = model.get_classifier()(emb)
    return logits[:, 0], emb


class EMA:
    """Exponential moving average of a model's weights (buffers copied)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for e, p in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if e.dtype.is_floating_point:
                e.lerp_(p.detach(), 1.0 - self.decay)
            else:
                e.copy_(p)

    def state_dict(self) -> dict[str, Any]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state)


# ---------------------------------------------------------------- optimiser ----------------
def _lr_lambda(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    warm = cfg.optim.warmup_steps

    def f(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if cfg.optim.schedule != "cosine":
            return 1.0
        t = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


@dataclass
class Optimisation:
    """The optimiser and what steps with it: LR schedules, gradient scaler, clipping, EMA."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None
    scaler: torch.amp.GradScaler
    ema: EMA | None
    params: list[torch.nn.Parameter]
    grad_clip: float | None
    amp: str | None  # the autocast device type ("cuda", "cpu"), None = float32

    def autocast(self):
        """The forward pass's mixed precision: float16 on CUDA (with the gradient scaler),
        bfloat16 on a CPU that computes it natively; float32 when ``optim.amp`` is off."""
        if self.amp == "cuda":
            return torch.autocast("cuda")
        if self.amp == "cpu":
            return torch.autocast("cpu", torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def precision(self) -> str:
        """What the forward passes ran in, as the checkpoint records it (``training_data``)."""
        return {"cuda": "float16 autocast (CUDA)", "cpu": "bfloat16 autocast (CPU)"}.get(
            self.amp or "", "float32"
        )

    def parts(self) -> dict[str, Any]:
        """The stateful objects, by name, for :class:`~facetrust.train.state.TrainState`."""
        out: dict[str, Any] = {
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "scaler": self.scaler,
        }
        if self.plateau is not None:
            out["plateau"] = self.plateau
        if self.ema is not None:
            out["ema"] = self.ema
        return out

    def backward(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()

    def step(self, model: torch.nn.Module) -> None:
        """Clip, step the optimiser and the per-step schedule, update the EMA."""
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(model)

    def end_epoch(self, val_auc: float) -> None:
        if self.plateau is not None:
            self.plateau.step(val_auc)

    def eval_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The weights to validate and save: the EMA's when on."""
        return self.ema.model if self.ema is not None else model

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


def build_optimisation(
    cfg: TrainConfig, model: torch.nn.Module, steps_per_epoch: int, device: str
) -> Optimisation:
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    groups: list[dict[str, Any]] = [{"params": params}]
    if o.head_lr_scale != 1.0:
        # the classifier learns at head_lr_scale x lr (a fresh head on a pretrained body);
        # the first group stays the body's, whose lr is the one reported
        head = model.get_classifier() if hasattr(model, "get_classifier") else None
        if not isinstance(head, torch.nn.Module):
            raise InputError(f"optim.head_lr_scale: model {cfg.model.arch!r} has no classifier")
        in_head = {id(p) for p in head.parameters()}
        groups = [
            {"params": [p for p in params if id(p) not in in_head]},
            {"params": [p for p in params if id(p) in in_head], "lr": o.lr * o.head_lr_scale},
        ]
    if o.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
    else:
        opt = torch.optim.SGD(
            groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=True
        )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, steps_per_epoch * o.epochs))
    plateau = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.3, patience=1)
        if o.schedule == "plateau"
        else None
    )
    amp = amp_device(o.amp, device)
    return Optimisation(
        optimizer=opt,
        scheduler=sched,
        plateau=plateau,
        scaler=torch.amp.GradScaler("cuda", enabled=amp == "cuda"),
        ema=EMA(model, o.ema) if o.ema > 0 else None,
        params=params,
        grad_clip=o.grad_clip,
        amp=amp,
    )


def amp_device(amp: bool, device: str) -> str | None:
    """Where ``optim.amp`` trains in mixed precision: ``"cuda"`` on a GPU, ``"cpu"`` on a CPU
    that computes bfloat16 natively (AVX-512 BF16 or AMX: a training step of EfficientNet-Lite0
    takes half the time there, ``benchmarks/cnn_layout_speed.py``), else None (float32)."""
    if not amp:
        return None
    if device.startswith("cuda"):
        return "cuda"
    if device == "cpu" and cpu_bf16():
        return "cpu"
    return None


# ---------------------------------------------------------------- loss ---------------------
class Objective:
    """A batch and the model in, ``(total loss, unweighted parts)`` out: the configured terms
    (BCE, two-view consistency or distillation, supervised contrastive) with their inputs."""

    def __init__(self, loss_fn: Callable[..., Any], *, teacher=None, supcon: bool = False):
        self.loss_fn = loss_fn
        self.teacher = teacher
        self.supcon = supcon

    def __call__(self, model, x: torch.Tensor, y: torch.Tensor, x2: torch.Tensor | None = None):
        kwargs: dict[str, Any] = {}
        if self.supcon:
            logits, kwargs["features"] = logits_and_embedding(model, x)
        else:
            logits = model(x)[:, 0]
        if x2 is not None:
            kwargs["logits_b"] = model(x2)[:, 0]
        if self.teacher is not None:
            with torch.no_grad():
                kwargs["teacher_logits"] = self.teacher(x)[:, 0]
        # the loss in float32 whatever the forward pass's precision (autocast)
        with torch.autocast(logits.device.type, enabled=False):
            return self.loss_fn(logits.float(), y, **{k: v.float() for k, v in kwargs.items()})


def build_objective(
    cfg: TrainConfig, device: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> Objective:
    """The loss terms of ``cfg.loss`` (a teacher checkpoint loaded for distillation);
    ``wrap`` changes the loss function (fault injection's ``wrong_loss``)."""
    from facetrust.train.losses import CombinedLoss

    teacher = None
    if cfg.loss.teacher:
        from facetrust.models import load_checkpoint

        teacher, _ = load_checkpoint(cfg.loss.teacher, device=device)
        teacher = channels_last(teacher, device)
    kl_term = "distill" if teacher is not None else "kl"
    weights = {"bce": cfg.loss.bce, kl_term: cfg.loss.kl, "supcon": cfg.loss.supcon}
    loss_fn = CombinedLoss(
        {k: v for k, v in weights.items() if v > 0},
        label_smoothing=cfg.loss.label_smoothing,
        supcon_temperature=cfg.loss.temperature,
        distill_temperature=cfg.loss.distill_temperature,
    )
    return Objective(wrap(loss_fn), teacher=teacher, supcon=cfg.loss.supcon > 0)
