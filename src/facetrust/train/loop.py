"""The training loop: config in, calibrated self-describing checkpoints out.

A run goes in stages, each a small function a newcomer can read and change alone:

1. build (:mod:`facetrust.train.build`): rows and splits, the crop contract, the training set
   and its loader, the model, the optimiser with its schedules, the loss terms;
2. :func:`train_one_epoch`, then validation through the scoring core
   (:class:`~facetrust.detect.scoring.FaceScorer`, the same code ``detect`` and ``eval`` use);
3. :class:`~facetrust.train.state.TrainState` records the epoch and alone saves (and, with
   ``resume``, restores) everything a run needs to continue;
4. callbacks (:mod:`facetrust.train.callbacks`) do fault injection, the epoch log, experiment
   tracking and Optuna pruning;
5. finish: calibrate on the calib split, pick the threshold, evaluate, write the checkpoints.

Process-wide settings (thread count, the global torch seed) are set by :meth:`Trainer.run`,
the entry point, never by constructing a ``Trainer``.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facetrust.config import Settings, apply_threads, resolve_device
from facetrust.data.manifest import ManifestRow
from facetrust.errors import InputError
from facetrust.faces.align import CropContract
from facetrust.models.layout import channels_last
from facetrust.progress import ProgressBar
from facetrust.train.build import (
    Objective,
    Optimisation,
    TrainData,
    build_data,
    build_model,
    build_objective,
    build_optimisation,
    checkpoint_name,
    crop_contract_for,
    manifest_for,
    select_rows,
)
from facetrust.train.callbacks import (
    Callback,
    CallbackList,
    EpochLog,
    FaultCallback,
    OptunaPruning,
    TrackingCallback,
)
from facetrust.train.config import TrainConfig, save_config
from facetrust.train.state import STATE_FILE, GlobalTorchRNG, TrainState

__all__ = [
    "TrainResult",
    "Trainer",
    "TrainingInterrupted",
    "select_rows",
    "train_one_epoch",
]


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


@dataclass
class _Run:
    """What ``Trainer.run`` built: the pieces its stages share."""

    name: str  # the checkpoint's name
    device: str
    data: TrainData
    model: torch.nn.Module
    optim: Optimisation
    objective: Objective
    state: TrainState
    callbacks: CallbackList
    scorer: Any  # FaceScorer over the weights validated and saved (the EMA's when on)


# ---------------------------------------------------------------- one epoch ----------------
def train_one_epoch(
    model: torch.nn.Module,
    loader,
    objective: Objective,
    optim: Optimisation,
    state: TrainState,
    callbacks: Callback,
    device: str,
    bar=None,
) -> dict[str, float]:
    """One pass over ``loader``; advances ``state.step``. Returns the mean training loss
    (``train_loss``) and each loss term's unweighted mean (``train_<term>``)."""
    model.train()
    totals: list[float] = []
    parts: dict[str, list[float]] = {}
    for batch in loader:
        if len(batch) == 4:  # two augmented views (consistency loss)
            x, x2, y, _ = batch
            x2 = channels_last(x2.to(device), device)
        else:
            x, y, _ = batch
            x2 = None
        x, y = callbacks.on_batch(channels_last(x.to(device), device), y.to(device), state.step)
        with optim.autocast():
            total, terms = objective(model, x, y, x2)
        optim.backward(total)
        callbacks.after_backward(model, state.step)
        optim.step(model)
        callbacks.on_step_end(model, state.step)
        state.step += 1
        totals.append(float(total.detach()))
        for k, v in terms.items():
            parts.setdefault(k, []).append(float(v))
        if bar is not None:
            bar(loss=float(np.mean(totals[-20:])))
    out = {"train_loss": float(np.mean(totals)) if totals else float("nan")}
    out.update({f"train_{k}": float(np.mean(v)) for k, v in parts.items()})
    return out


def validation_scores(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(AUC, BCE loss)`` of logits against 0/1 labels; the AUC is ``-loss`` when one class
    is missing (so that "higher is better" still holds)."""
    from sklearn.metrics import roc_auc_score

    t = torch.from_numpy(np.asarray(logits, np.float32))
    loss = float(
        torch.nn.functional.binary_cross_entropy_with_logits(t, torch.from_numpy(y).float())
    )
    auc = float(roc_auc_score(y, logits)) if len(np.unique(y)) == 2 else float("nan")
    return (auc if not math.isnan(auc) else -loss), loss


# ---------------------------------------------------------------- the trainer --------------
class Trainer:
    """Configured once from a ``TrainConfig``; ``run()`` trains, calibrates and saves.

    Args:
        cfg: the training config.
        progress: show a progress bar and print one line per epoch.
        trial: an Optuna trial: val AUC is reported each epoch, and the run stops when the
            trial is pruned.
        callbacks: more :class:`~facetrust.train.callbacks.Callback` objects, called after
            the built-in ones (faults, the epoch log, tracking, pruning).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        progress: bool = True,
        trial: Any = None,
        callbacks: list[Callback] | tuple[Callback, ...] = (),
    ) -> None:
        self.cfg = cfg
        self.out = Path(cfg.output)
        self.progress = progress
        self.trial = trial
        self.extra_callbacks = list(callbacks)

    def __repr__(self) -> str:
        return f"Trainer(arch={self.cfg.model.arch!r}, output={str(self.out)!r})"

    # ------------------------------------------------------------------------ entry point
    def run(self, resume: bool = False, stop_after_epochs: int | None = None) -> TrainResult:
        """Train, calibrate and write ``best`` / ``final`` checkpoints into ``cfg.output``.

        This is the entry point: it sets the process's thread count (``cfg.threads``, else
        ``FACETRUST_THREADS``) and seeds the global torch RNG from ``cfg.seed`` (dropout and
        pseudo-fakes draw from it); the splits, the sampler, the augmentations, the model's
        initial weights and the faults use generators of their own.
        ``resume`` continues the run saved in ``cfg.output``.
        """
        splits = select_rows(self.cfg)
        self._check_calib_split(splits)  # refuse now, not after the training
        self._claim_output(resume)
        apply_threads(self.cfg.threads or Settings().threads)
        torch.manual_seed(self.cfg.seed)
        run = self._build(resume, splits)
        status = "FAILED"
        try:
            run.callbacks.on_train_start(self)
            stopped_early = self._train_epochs(run, stop_after_epochs)
            result = self._finish_run(run, stopped_early)
            run.callbacks.on_train_end(result)
            status = "FINISHED"
        finally:
            run.callbacks.close(status)
        return result

    # ------------------------------------------------------------------------ stages
    def _build(self, resume: bool, splits: dict[str, list[ManifestRow]] | None = None) -> _Run:
        """Data, model, optimiser, callbacks, loss and state; with ``resume``, the saved
        state put back."""
        cfg = self.cfg
        device = resolve_device(cfg.device)
        name = checkpoint_name(cfg)
        data = build_data(cfg, splits)
        model = build_model(cfg, device, init_from=not resume)
        optim = build_optimisation(cfg, model, data.steps_per_epoch, device)
        callbacks = self._callbacks(name)
        objective = build_objective(cfg, device, callbacks.wrap_loss)
        state = TrainState(
            self.out, {"model": model, **optim.parts(), "torch_rng": GlobalTorchRNG()}
        )
        if resume:
            state.load(map_location=device)
        scorer = self._scorer(optim.eval_model(model), data.contract, device)
        return _Run(name, device, data, model, optim, objective, state, callbacks, scorer)

    def _train_epochs(self, run: _Run, stop_after_epochs: int | None) -> bool:
        """Epochs until ``optim.epochs`` are done; True when early stopping ended them."""
        cfg, state = self.cfg, run.state
        first = state.epoch
        while state.epoch < cfg.optim.epochs:
            self._epoch(run)
            if cfg.optim.early_stopping and state.bad_epochs >= cfg.optim.early_stopping:
                return True
            if stop_after_epochs is not None and state.epoch - first >= stop_after_epochs:
                raise TrainingInterrupted(f"stopped after epoch {state.epoch}")
        return False

    def _epoch(self, run: _Run) -> dict[str, Any]:
        """Train one epoch, validate, record it in the state (saved), tell the callbacks."""
        cfg, state = self.cfg, run.state
        epoch, t0 = state.epoch, time.perf_counter()
        run.data.start_epoch(epoch)
        title = f"epoch {epoch + 1}/{cfg.optim.epochs}"
        shown = None if self.progress else False  # on a terminal
        with ProgressBar(run.data.steps_per_epoch, title, enabled=shown) as bar:
            losses = train_one_epoch(
                run.model, run.data.loader, run.objective, run.optim, state, run.callbacks,
                run.device, bar,
            )  # fmt: skip
        run.callbacks.on_epoch_end(run.model, epoch)
        val_rows = run.data.splits["val"]
        val_logits = _row_logits(run.scorer, val_rows, manifest_for(cfg, "val"))
        val_auc, val_loss = validation_scores(val_logits, np.array([r.y for r in val_rows]))
        run.optim.end_epoch(val_auc)
        rec = {
            "epoch": epoch + 1,
            "step": state.step,
            **losses,
            "val_auc": val_auc,
            "val_loss": val_loss,
            "lr": run.optim.lr,
            "seconds": time.perf_counter() - t0,
        }
        state.record(rec, val_auc, run.scorer.model.state_dict())
        run.callbacks.on_record(rec)
        return rec

    def _finish_run(self, run: _Run, stopped_early: bool) -> TrainResult:
        """Write ``final`` (the last weights) and ``best`` (the best epoch's, with metrics)."""
        state, splits = run.state, run.data.splits
        summary = {**self._summary(run.data), "precision": run.optim.precision}
        final, _ = self._finish(run.scorer, "final", splits, state.history, run.name, summary)
        run.scorer.model.load_state_dict(state.best_weights(map_location=run.device))
        best, metrics = self._finish(
            run.scorer, "best", splits, state.history, run.name, summary, with_metrics=True
        )
        return TrainResult(
            output=self.out,
            best=best,
            final=final,
            epochs_run=len(state.history),
            best_epoch=state.best_epoch + 1,
            history=state.history,
            metrics=metrics,
            stopped_early=stopped_early,
        )

    def recalibrate(self, checkpoint: str | os.PathLike, tag: str = "best") -> tuple[Path, dict]:
        """Refit calibration and threshold of a trained ``checkpoint`` on this config's calib
        split (e.g. after training on re-encoded copies of the crops, or on other hardware),
        re-evaluate it on val/test and write ``<output>/<tag>.safetensors`` with a report.
        The weights are unchanged. Returns the new checkpoint's path and its metrics."""
        from facetrust.detect.scoring import FaceScorer
        from facetrust.models import load_checkpoint

        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        target = (self.out / f"{tag}.safetensors").resolve()
        if target == Path(checkpoint).resolve():
            raise InputError(f"{target} would overwrite the checkpoint it recalibrates")
        apply_threads(cfg.threads or Settings().threads)
        device = resolve_device(cfg.device)
        model, meta = load_checkpoint(checkpoint, device)
        if meta.experts:
            raise InputError("a fused checkpoint is calibrated by `facetrust fuse`, not here")
        if meta.input_size != cfg.model.input_size:
            raise InputError(
                f"the checkpoint takes {meta.input_size} px, the config says "
                f"{cfg.model.input_size}: use the config it was trained with"
            )
        crop_contract_for(cfg)  # the manifests agree with the config
        save_config(cfg, self.out / "config.yaml")
        history = list((meta.metrics or {}).get("history", []))
        splits = select_rows(cfg)
        scorer = FaceScorer(model, meta, device=device, batch_size=cfg.optim.batch_size)
        summary = dict(meta.training_data or {})
        return self._finish(
            scorer, tag, splits, history, checkpoint_name(cfg), summary, with_metrics=True
        )

    def _check_calib_split(self, splits: dict[str, list[ManifestRow]]) -> None:
        from facetrust.detect.calibration import check_calibration_counts

        cal = self.cfg.calibration
        labels = [r.y for r in splits.get("calib", []) if r.crop]
        check_calibration_counts(labels, cal.method, cal.min_per_class)

    def _claim_output(self, resume: bool) -> None:
        """Check the output folder (a run there needs ``resume``; ``resume`` needs one with the
        same config) and write ``config.yaml``."""
        self.out.mkdir(parents=True, exist_ok=True)
        saved = self.out / "config.yaml"
        if resume:
            if not TrainState.exists(self.out) or not saved.is_file():
                raise InputError(f"nothing to resume in {self.out} (no {STATE_FILE})")
            _check_same_config(saved, self.cfg)
        elif TrainState.exists(self.out):
            raise InputError(
                f"{self.out} already holds a training run: use --resume, or another output"
            )
        save_config(self.cfg, saved)

    def _callbacks(self, name: str) -> CallbackList:
        from facetrust.train.faults import FaultConfig, FaultInjector
        from facetrust.train.tracking import make_tracker

        cfg = self.cfg
        faults = FaultInjector(FaultConfig(**cfg.faults.model_dump(), seed=cfg.seed))
        tracker = make_tracker(
            cfg.tracking.mlflow, cfg.tracking.uri, cfg.tracking.experiment, self.out, name
        )
        return CallbackList(
            [
                FaultCallback(faults) if faults.active else None,
                EpochLog(self.out / "metrics.jsonl", verbose=self.progress),
                TrackingCallback(tracker, cfg.model_dump(mode="json")),
                OptunaPruning(self.trial) if self.trial is not None else None,
                *self.extra_callbacks,
            ]
        )

    def _scorer(self, model: torch.nn.Module, contract: CropContract | None, device: str):
        """The scoring core over the model being trained (uncalibrated)."""
        from facetrust.detect.scoring import FaceScorer

        meta = self._meta(model, contract)
        return FaceScorer(model, meta, device=device, batch_size=self.cfg.optim.batch_size)

    def _meta(self, model: torch.nn.Module, contract: CropContract | None, **fields: Any):
        from facetrust.faces.align import ALIGNMENT
        from facetrust.models import CheckpointMeta, model_info

        cfg = self.cfg
        info = model_info(cfg.model.arch)
        return CheckpointMeta.for_model(
            model,
            input_size=cfg.model.input_size,
            mean=tuple(info.mean),
            std=tuple(info.std),
            face_margin=contract.margin if contract else cfg.model.margin,
            crop_size=contract.size if contract else None,
            crop_alignment=contract.alignment if contract else ALIGNMENT,
            **fields,
        )

    def _summary(self, data: TrainData) -> dict[str, Any]:
        from facetrust.train.faults import FaultConfig, FaultInjector

        out = data.summary()
        active = FaultInjector(FaultConfig(**self.cfg.faults.model_dump())).active
        if active:  # a checkpoint trained with injected faults says so
            out["faults"] = {k: getattr(self.cfg.faults, k) for k in active}
        return out

    def _finish(self, scorer, tag, splits, history, name, summary, with_metrics=False):
        """Calibrate on the calib split, pick the threshold, evaluate val/test (with
        ``with_metrics``), save ``<output>/<tag>.safetensors``. Returns (path, metrics)."""
        from facetrust.detect.calibration import (
            apply_calibration,
            choose_threshold,
            fit_calibration,
        )
        from facetrust.models import CheckpointMeta, save_checkpoint
        from facetrust.train.metrics import evaluate
        from facetrust.train.report import write_report

        cfg = self.cfg

        def logits_for(split: str) -> tuple[list[ManifestRow], np.ndarray]:
            rows = [r for r in splits.get(split, []) if r.crop]
            return rows, _row_logits(scorer, rows, manifest_for(cfg, split))

        calib_rows, calib_logits = logits_for("calib")
        calib_y = np.array([r.y for r in calib_rows])
        cal = fit_calibration(
            calib_logits,
            calib_y,
            cfg.calibration.method,
            min_per_class=cfg.calibration.min_per_class,
        )
        cal_probs = apply_calibration(calib_logits, cal)
        threshold, rule = choose_threshold(cal_probs, calib_y, cfg.calibration.threshold_rule)
        metrics: dict[str, Any] = {}
        if with_metrics:
            for split in ("val", "test"):
                rows, logits = logits_for(split)
                if not rows:
                    continue
                probs = apply_calibration(logits, cal)
                metrics[split] = evaluate(rows, probs, threshold)
                if split == "test" or not splits.get("test"):
                    write_report(
                        self.out / "report" / split,
                        rows,
                        probs,
                        threshold,
                        name,
                        extra={"split": split},
                    )
        meta = CheckpointMeta.model_validate(  # validated: the fields are typed
            {
                **scorer.meta.model_dump(),
                "calibration": cal,
                "threshold": float(threshold),
                "threshold_rule": rule,
                "name": name,
                "training_data": summary,
                "metrics": {**metrics, "history": history},
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        path = save_checkpoint(self.out / f"{tag}.safetensors", scorer.model, meta)
        return path, metrics


# ---------------------------------------------------------------- helpers ------------------
def _row_logits(scorer, rows: list[ManifestRow], manifest: str) -> np.ndarray:
    """The CNN's logit for each row's cached crop, through the scoring core."""
    from facetrust.train.fusion import score_rows

    return score_rows(scorer, rows, Path(manifest), cnn_only=True)


def _check_same_config(saved: Path, cfg: TrainConfig) -> None:
    import yaml

    old = yaml.safe_load(saved.read_text()) or {}
    with contextlib.suppress(ValueError):  # settings added since then take their defaults
        old = TrainConfig.model_validate(old).model_dump(mode="json")
    new = cfg.model_dump(mode="json")
    for section in ("data", "model", "loss", "aug", "faults", "seed"):
        if old.get(section) != new.get(section):
            raise InputError(f"cannot resume: the config's {section!r} differs from {saved}")
