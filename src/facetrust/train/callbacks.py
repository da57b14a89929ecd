"""Callbacks: what the training loop calls at fixed points, so that fault injection, experiment
tracking, Optuna pruning and the epoch log stay out of the loop's body.

The hooks, in the order the loop calls them::

    on_train_start(trainer)                    once, after building and resuming
    for each epoch:
        for each batch:
            x, y = on_batch(x, y, step)        may return changed tensors (faults)
            loss = wrap_loss(loss) ...         wrap_loss is applied once, at start
            after_backward(model, step)        gradients are there (faults)
            on_step_end(model, step)           the optimiser has stepped
        on_epoch_end(model, epoch)             before validation (faults)
        on_record(record)                      validated, state saved (log, tracking, pruning)
    on_train_end(result)                       checkpoints written
    close(status)                              always, "FINISHED" or "FAILED"
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from torch import Tensor, nn

__all__ = [
    "Callback",
    "CallbackList",
    "EpochLog",
    "FaultCallback",
    "OptunaPruning",
    "TrackingCallback",
]


class Callback:
    """Base class: every hook does nothing."""

    def on_train_start(self, trainer: Any) -> None: ...

    def on_batch(self, x: Tensor, y: Tensor, step: int) -> tuple[Tensor, Tensor]:
        return x, y

    def wrap_loss(self, loss_fn: Callable[..., Any]) -> Callable[..., Any]:
        return loss_fn

    def after_backward(self, model: nn.Module, step: int) -> None: ...

    def on_step_end(self, model: nn.Module, step: int) -> None: ...

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None: ...

    def on_record(self, record: dict[str, Any]) -> None: ...

    def on_train_end(self, result: Any) -> None: ...

    def close(self, status: str) -> None: ...


class CallbackList(Callback):
    """Calls each callback's hook in order (``on_batch`` and ``wrap_loss`` chain)."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = [c for c in callbacks if c is not None]

    def __repr__(self) -> str:
        return f"CallbackList({', '.join(type(c).__name__ for c in self.callbacks)})"

    def on_train_start(self, trainer: Any) -> None:
        for c in self.callbacks:
            c.on_train_start(trainer)

    def on_batch(self, x: Tensor, y: Tensor, step: int) -> tuple[Tensor, Tensor]:
        for c in self.callbacks:
            x, y = c.on_batch(x, y, step)
        return x, y

    def wrap_loss(self, loss_fn: Callable[..., Any]) -> Callable[..., Any]:
        for c in self.callbacks:
            loss_fn = c.wrap_loss(loss_fn)
        return loss_fn

    def after_backward(self, model: nn.Module, step: int) -> None:
        for c in self.callbacks:
            c.after_backward(model, step)

    def on_step_end(self, model: nn.Module, step: int) -> None:
        for c in self.callbacks:
            c.on_step_end(model, step)

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        for c in self.callbacks:
            c.on_epoch_end(model, epoch)

    def on_record(self, record: dict[str, Any]) -> None:
        for c in self.callbacks:
            c.on_record(record)

    def on_train_end(self, result: Any) -> None:
        for c in self.callbacks:
            c.on_train_end(result)

    def close(self, status: str) -> None:
        for c in self.callbacks:
            c.close(status)


class FaultCallback(Callback):
    """Fault injection (:class:`~facetrust.train.faults.FaultInjector`) as a callback."""

    def __init__(self, injector: Any) -> None:
        self.injector = injector

    def __repr__(self) -> str:
        return f"FaultCallback({self.injector!r})"

    def on_batch(self, x: Tensor, y: Tensor, step: int) -> tuple[Tensor, Tensor]:
        return self.injector.corrupt_batch(x, y, step)

    def wrap_loss(self, loss_fn: Callable[..., Any]) -> Callable[..., Any]:
        return self.injector.loss_fn(loss_fn)

    def after_backward(self, model: nn.Module, step: int) -> None:
        self.injector.after_backward(model, step)

    def on_step_end(self, model: nn.Module, step: int) -> None:
        self.injector.on_step_end(model, step)

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        self.injector.on_epoch_end(model, epoch)


class EpochLog(Callback):
    """Appends each epoch's record to ``metrics.jsonl`` and prints a line when ``verbose``."""

    def __init__(self, path: str | Path, verbose: bool = True) -> None:
        self.path = Path(path)
        self.verbose = verbose

    def on_record(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.verbose:
            print(format_record(record), flush=True)


class TrackingCallback(Callback):
    """Logs the config, each epoch's record, the best checkpoint, the report plots and the
    final metrics to a tracker (:mod:`facetrust.train.tracking`)."""

    def __init__(self, tracker: Any, params: dict[str, Any]) -> None:
        self.tracker = tracker
        self.params = params

    def on_train_start(self, trainer: Any) -> None:
        self.tracker.log_params(self.params)

    def on_record(self, record: dict[str, Any]) -> None:
        self.tracker.log_metrics(_numbers(record), step=record["epoch"])

    def on_train_end(self, result: Any) -> None:
        self.tracker.log_artifact(result.best)
        for png in sorted((Path(result.output) / "report").rglob("*.png")):
            self.tracker.log_artifact(png, png.parent.name)
        self.tracker.log_metrics(_numbers(result.metrics), step=result.epochs_run)

    def close(self, status: str) -> None:
        self.tracker.close(status)


class OptunaPruning(Callback):
    """Reports each epoch's val AUC to an Optuna trial; raises ``TrialPruned`` when told."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def on_record(self, record: dict[str, Any]) -> None:
        self.trial.report(record["val_auc"], record["epoch"] - 1)
        if self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned()


def format_record(rec: dict[str, Any]) -> str:
    return (
        f"epoch {rec['epoch']}: train_loss {rec['train_loss']:.4f}  val_auc {rec['val_auc']:.4f}  "
        f"val_loss {rec['val_loss']:.4f}  lr {rec['lr']:.2e}  {rec['seconds']:.0f}s"
    )


def _numbers(tree: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict, keys joined with dots (MLflow keys: at most 250)."""
    out: dict[str, float] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_numbers(v, f"{prefix}{k}."))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[f"{prefix}{k}"[:250]] = float(v)
    return out
