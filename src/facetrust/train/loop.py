"""The training loop: config in, calibrated self-describing checkpoints out."""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from facetrust.config import resolve_device
from facetrust.data.manifest import ManifestRow, read_manifest
from facetrust.errors import InputError
from facetrust.train.config import TrainConfig, save_config
from facetrust.train.datasets import FaceCropDataset, balanced_weights
from facetrust.train.tracking import make_tracker

STATE_FILE = "state.pt"


@dataclass
class TrainResult:
    output: Path
    best: Path
    final: Path
    epochs_run: int
    best_epoch: int
    history: list[dict[str, Any]]
    metrics: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False


class TrainingInterrupted(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by ``stop_after_epochs`` (used to test resuming)."""


# ---------------------------------------------------------------- data ---------------------
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


# ---------------------------------------------------------------- model helpers ------------
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


def _lr_lambda(cfg: TrainConfig, total_steps: int):
    warm = cfg.optim.warmup_steps

    def f(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if cfg.optim.schedule != "cosine":
            return 1.0
        t = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


@torch.no_grad()
def predict_logits(model, ds, batch_size: int, device: str, workers: int = 0) -> np.ndarray:
    model.eval()
    out = []
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)
    for batch in loader:
        x = batch[0].to(device)
        out.append(model(x).float().reshape(len(x), -1)[:, 0].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


# ---------------------------------------------------------------- the loop -----------------
class Trainer:
    """Configured once from a ``TrainConfig``; ``run()`` trains, calibrates and saves."""

    def __init__(self, cfg: TrainConfig, *, progress: bool = True, trial: Any = None) -> None:
        self.cfg = cfg
        self.out = Path(cfg.output)
        self.progress = progress
        self.trial = trial  # an optuna trial: report val AUC per epoch, prune when told

    def __repr__(self) -> str:
        return f"Trainer(arch={self.cfg.model.arch!r}, output={str(self.out)!r})"

    def run(self, resume: bool = False, stop_after_epochs: int | None = None) -> TrainResult:
        from facetrust.data.transforms import eval_transform, train_transform
        from facetrust.models import create_model, model_info
        from facetrust.train.faults import FaultConfig, FaultInjector
        from facetrust.train.losses import CombinedLoss

        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        state_path = self.out / STATE_FILE
        if resume:
            saved = self.out / "config.yaml"
            if not state_path.is_file() or not saved.is_file():
                raise InputError(f"nothing to resume in {self.out} (no {STATE_FILE})")
            _check_same_config(saved, cfg)
        elif state_path.exists():
            raise InputError(
                f"{self.out} already holds a training run: use --resume, or another output"
            )
        save_config(cfg, self.out / "config.yaml")
        _seed_everything(cfg.seed)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = resolve_device(cfg.device)

        splits = select_rows(cfg)
        info = model_info(cfg.model.arch)
        mean, std, size = info.mean, info.std, cfg.model.input_size
        kl_views = cfg.loss.kl > 0 and cfg.loss.teacher is None
        train_ds = FaceCropDataset(
            splits["train"],
            cfg.data.train_manifest,
            train_transform(size, cfg.aug.strength),
            mean,
            std,
            sbi_ratio=cfg.data.sbi_ratio,
            sbi_only=cfg.data.sbi_only,
            two_views=kl_views,
        )
        ev = eval_transform(size)
        val_ds = FaceCropDataset(splits["val"], _manifest_for(cfg, "val"), ev, mean, std)
        if len(np.unique(train_ds.labels)) < 2:
            raise InputError("the training split has one class only: add fakes or set sbi_ratio")

        imagenet = cfg.model.pretrained and not cfg.model.init_from  # init_from replaces them
        model = create_model(cfg.model.arch, pretrained=imagenet, **cfg.model.args)
        if cfg.model.init_from and not resume:
            _init_from_checkpoint(model, cfg)
        for name, p in model.named_parameters():
            if any(name.startswith(prefix) for prefix in cfg.optim.freeze):
                p.requires_grad_(False)
        model.to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        if cfg.optim.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        else:
            opt = torch.optim.SGD(
                params,
                lr=cfg.optim.lr,
                momentum=cfg.optim.momentum,
                weight_decay=cfg.optim.weight_decay,
                nesterov=True,
            )
        n_per_epoch = cfg.data.samples_per_epoch or len(train_ds)
        steps_per_epoch = max(1, n_per_epoch // cfg.optim.batch_size)
        total_steps = steps_per_epoch * cfg.optim.epochs
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, total_steps))
        plateau = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.3, patience=1)
            if cfg.optim.schedule == "plateau"
            else None
        )
        ema = EMA(model, cfg.optim.ema) if cfg.optim.ema > 0 else None
        use_amp = cfg.optim.amp and device.startswith("cuda")
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        teacher = None
        if cfg.loss.teacher:
            from facetrust.models import load_checkpoint

            teacher, _ = load_checkpoint(cfg.loss.teacher, device=device)
        kl_term = "distill" if teacher is not None else "kl"
        weights = {"bce": cfg.loss.bce, kl_term: cfg.loss.kl, "supcon": cfg.loss.supcon}
        loss_fn = CombinedLoss(
            {k: v for k, v in weights.items() if v > 0},
            label_smoothing=cfg.loss.label_smoothing,
            supcon_temperature=cfg.loss.temperature,
            distill_temperature=cfg.loss.distill_temperature,
        )
        faults = FaultInjector(FaultConfig(**cfg.faults.model_dump(), seed=cfg.seed))
        loss_call = faults.loss_fn(loss_fn)

        start_epoch, step, best_auc, best_epoch, bad_epochs = 0, 0, -1.0, -1, 0
        history: list[dict[str, Any]] = []
        if resume:
            st = torch.load(state_path, map_location=device, weights_only=False)
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            if plateau is not None and st.get("plateau"):
                plateau.load_state_dict(st["plateau"])
            if ema is not None and st.get("ema"):
                ema.model.load_state_dict(st["ema"])
            scaler.load_state_dict(st["scaler"])
            start_epoch, step = st["epoch"] + 1, st["step"]
            best_auc, best_epoch, bad_epochs = st["best_auc"], st["best_epoch"], st["bad_epochs"]
            history = st["history"]
            torch.set_rng_state(st["torch_rng"])
            np.random.set_state(st["numpy_rng"])
            random.setstate(st["python_rng"])

        tracker = make_tracker(
            cfg.tracking.mlflow, cfg.tracking.uri, cfg.tracking.experiment, self.out, cfg.name
        )
        tracker.log_params(cfg.model_dump(mode="json"))
        sampler = WeightedRandomSampler(
            balanced_weights(train_ds.labels)
            if cfg.data.balance
            else torch.ones(len(train_ds), dtype=torch.double),
            num_samples=steps_per_epoch * cfg.optim.batch_size,
            replacement=True,
        )
        loader = DataLoader(
            train_ds,
            batch_size=cfg.optim.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=cfg.workers,
            persistent_workers=cfg.workers > 0,
        )
        status = "FAILED"
        stopped_early = False
        try:
            for epoch in range(start_epoch, cfg.optim.epochs):
                t0 = time.perf_counter()
                model.train()
                losses: list[float] = []
                with _progress(
                    self.progress, f"epoch {epoch + 1}/{cfg.optim.epochs}", steps_per_epoch
                ) as bar:
                    for batch in loader:
                        if kl_views:
                            x, x2, y, _ = batch
                            x2 = x2.to(device)
                        else:
                            x, y, _ = batch
                            x2 = None
                        x, y = x.to(device), y.to(device)
                        x, y = faults.corrupt_batch(x, y, step)
                        with torch.autocast("cuda", enabled=use_amp):
                            kwargs: dict[str, Any] = {}
                            if cfg.loss.supcon > 0:
                                logits, emb = logits_and_embedding(model, x)
                                kwargs["features"] = emb
                            else:
                                logits = model(x)[:, 0]
                            if x2 is not None:
                                kwargs["logits_b"] = model(x2)[:, 0]
                            if teacher is not None:
                                with torch.no_grad():
                                    kwargs["teacher_logits"] = teacher(x)[:, 0]
                            total, parts = loss_call(logits.float(), y, **kwargs)
                        opt.zero_grad(set_to_none=True)
                        scaler.scale(total).backward()
                        faults.after_backward(model, step)
                        if cfg.optim.grad_clip:
                            scaler.unscale_(opt)
                            torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
                        scaler.step(opt)
                        scaler.update()
                        sched.step()
                        if ema is not None:
                            ema.update(model)
                        faults.on_step_end(model, step)
                        step += 1
                        losses.append(float(total.detach()))
                        bar(loss=float(np.mean(losses[-20:])))
                faults.on_epoch_end(model, epoch)
                eval_model = ema.model if ema is not None else model
                val_auc, val_loss = _validate(eval_model, val_ds, cfg, device)
                if plateau is not None:
                    plateau.step(val_auc)
                improved = val_auc > best_auc
                rec = {
                    "epoch": epoch + 1,
                    "step": step,
                    "train_loss": float(np.mean(losses)),
                    "val_auc": val_auc,
                    "val_loss": val_loss,
                    "lr": opt.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - t0,
                }
                history.append(rec)
                tracker.log_metrics(rec, step=epoch + 1)
                with (self.out / "metrics.jsonl").open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                if self.progress:
                    print(_fmt(rec), flush=True)
                if improved:
                    best_auc, best_epoch, bad_epochs = val_auc, epoch, 0
                    _atomic_torch_save(eval_model.state_dict(), self.out / "best_weights.pt")
                else:
                    bad_epochs += 1
                _atomic_torch_save(
                    {
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "plateau": plateau.state_dict() if plateau is not None else None,
                        "ema": ema.model.state_dict() if ema is not None else None,
                        "scaler": scaler.state_dict(),
                        "epoch": epoch,
                        "step": step,
                        "best_auc": best_auc,
                        "best_epoch": best_epoch,
                        "bad_epochs": bad_epochs,
                        "history": history,
                        "torch_rng": torch.get_rng_state(),
                        "numpy_rng": np.random.get_state(),
                        "python_rng": random.getstate(),
                    },
                    state_path,
                )
                if self.trial is not None:
                    self.trial.report(val_auc, epoch)
                    if self.trial.should_prune():
                        import optuna

                        raise optuna.TrialPruned()
                if cfg.optim.early_stopping and bad_epochs >= cfg.optim.early_stopping:
                    stopped_early = True
                    break
                if stop_after_epochs is not None and epoch + 1 - start_epoch >= stop_after_epochs:
                    raise TrainingInterrupted(f"stopped after epoch {epoch + 1}")

            final_model = ema.model if ema is not None else model
            final = self._finish(final_model, "final", splits, mean, std, history, device)
            final_model.load_state_dict(
                torch.load(self.out / "best_weights.pt", map_location=device, weights_only=True)
            )
            best, metrics = self._finish(
                final_model, "best", splits, mean, std, history, device, with_metrics=True
            )
            tracker.log_artifact(best)
            for png in sorted((self.out / "report").rglob("*.png")):
                tracker.log_artifact(png, png.parent.name)
            tracker.log_metrics(_flat_numbers(metrics), step=len(history))
            status = "FINISHED"
        finally:
            tracker.close(status)
        return TrainResult(
            output=self.out,
            best=best,
            final=final[0],
            epochs_run=len(history),
            best_epoch=best_epoch + 1,
            history=history,
            metrics=metrics,
            stopped_early=stopped_early,
        )

    def recalibrate(self, checkpoint: str | os.PathLike, tag: str = "best") -> tuple[Path, dict]:
        """Refit calibration and threshold of a trained ``checkpoint`` on this config's calib
        split (e.g. after training on re-encoded copies of the crops, or on other hardware),
        re-evaluate it on val/test and write ``<output>/<tag>.safetensors`` with a report.
        The weights are unchanged. Returns the new checkpoint's path and its metrics."""
        from facetrust.models import load_checkpoint

        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        target = (self.out / f"{tag}.safetensors").resolve()
        if target == Path(checkpoint).resolve():
            raise InputError(f"{target} would overwrite the checkpoint it recalibrates")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = resolve_device(cfg.device)
        model, meta = load_checkpoint(checkpoint, device)
        if meta.experts:
            raise InputError("a fused checkpoint is calibrated by `facetrust fuse`, not here")
        if meta.input_size != cfg.model.input_size:
            raise InputError(
                f"the checkpoint takes {meta.input_size} px, the config says "
                f"{cfg.model.input_size}: use the config it was trained with"
            )
        save_config(cfg, self.out / "config.yaml")
        history = list((meta.metrics or {}).get("history", []))
        splits = select_rows(cfg)
        path, metrics = self._finish(
            model, tag, splits, meta.mean, meta.std, history, device, with_metrics=True
        )
        return path, metrics

    # -------------------------------------------------------------------------------------
    def _finish(self, model, tag, splits, mean, std, history, device, with_metrics=False):
        """Calibrate on the calib split, pick the threshold, evaluate, save a checkpoint."""
        from facetrust.data.transforms import eval_transform
        from facetrust.detect.calibration import (
            apply_calibration,
            choose_threshold,
            fit_calibration,
        )
        from facetrust.models import CheckpointMeta, save_checkpoint
        from facetrust.train.metrics import evaluate
        from facetrust.train.report import write_report

        cfg = self.cfg
        size = cfg.model.input_size
        ev = eval_transform(size)
        bs = cfg.optim.batch_size

        def logits_for(name: str) -> np.ndarray:
            ds = FaceCropDataset(splits[name], _manifest_for(cfg, name), ev, mean, std)
            return predict_logits(model, ds, bs, device, cfg.workers)

        calib_rows = [r for r in splits["calib"] if r.crop]
        calib_logits = logits_for("calib")
        calib_y = np.array([r.y for r in calib_rows])
        cal = fit_calibration(calib_logits, calib_y, cfg.calibration.method)
        cal_probs = apply_calibration(calib_logits, cal)
        threshold, rule = choose_threshold(cal_probs, calib_y, cfg.calibration.threshold_rule)
        metrics: dict[str, Any] = {}
        if with_metrics:
            for name in ("val", "test"):
                rows = [r for r in splits.get(name, []) if r.crop]
                if not rows:
                    continue
                probs = apply_calibration(logits_for(name), cal)
                metrics[name] = evaluate(rows, probs, threshold)
                if name == "test" or not splits.get("test"):
                    write_report(
                        self.out / "report" / name,
                        rows,
                        probs,
                        threshold,
                        cfg.name or cfg.model.arch,
                        extra={"split": name},
                    )
        meta = CheckpointMeta.for_model(
            model,
            input_size=size,
            mean=tuple(mean),
            std=tuple(std),
            face_margin=cfg.model.margin,
            calibration=cal,
            threshold=float(threshold),
            threshold_rule=rule,
            name=cfg.name,
            training_data=_data_summary(splits),
            metrics={**metrics, "history": history},
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        path = save_checkpoint(self.out / f"{tag}.safetensors", model, meta)
        return (path, metrics) if with_metrics else (path, None)


# ---------------------------------------------------------------- helpers ------------------
def _manifest_for(cfg: TrainConfig, split: str) -> str:
    if split in ("val", "calib") and cfg.data.val_manifest:
        return cfg.data.val_manifest
    return cfg.data.train_manifest


def _validate(model, ds, cfg, device) -> tuple[float, float]:
    from sklearn.metrics import roc_auc_score

    logits = predict_logits(model, ds, cfg.optim.batch_size, device, cfg.workers)
    y = ds.labels[: len(logits)]
    t = torch.from_numpy(logits)
    loss = float(
        torch.nn.functional.binary_cross_entropy_with_logits(t, torch.from_numpy(y).float())
    )
    auc = float(roc_auc_score(y, logits)) if len(np.unique(y)) == 2 else float("nan")
    return (auc if not math.isnan(auc) else -loss), loss


def _data_summary(splits: dict[str, list[ManifestRow]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rows in splits.items():
        if not rows:
            continue
        per: dict[str, dict[str, int]] = {}
        for r in rows:
            per.setdefault(r.source, {"real": 0, "fake": 0})[r.label] += 1
        out[name] = per
    return out


def _flat_numbers(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(_flat_numbers(v, f"{prefix}{k}."))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[f"{prefix}{k}"[:250]] = float(v)
    return out


def _check_same_config(saved: Path, cfg: TrainConfig) -> None:
    import yaml

    old = yaml.safe_load(saved.read_text())
    new = cfg.model_dump(mode="json")
    for section in ("data", "model", "loss", "aug", "faults", "seed"):
        if old.get(section) != new.get(section):
            raise InputError(f"cannot resume: the config's {section!r} differs from {saved}")


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


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _fmt(rec: dict[str, Any]) -> str:
    return (
        f"epoch {rec['epoch']}: train_loss {rec['train_loss']:.4f}  val_auc {rec['val_auc']:.4f}  "
        f"val_loss {rec['val_loss']:.4f}  lr {rec['lr']:.2e}  {rec['seconds']:.0f}s"
    )


class _progress:
    """A rich progress bar on stderr (or nothing); call the object to advance with stats."""

    def __init__(self, enabled: bool, title: str, total: int) -> None:
        self.enabled, self.title, self.total = enabled, title, total
        self._bar = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.title, total=self.total, stats="")
        return self

    def __call__(self, **stats: float) -> None:
        if self._bar is not None:
            text = " ".join(f"{k} {v:.4f}" for k, v in stats.items())
            self._bar.update(self._task, advance=1, stats=text)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
