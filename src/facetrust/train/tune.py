"""Hyperparameter search with Optuna: each trial is a short training run; objective = val AUC."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from facetrust.errors import InputError
from facetrust.train.config import TrainConfig, set_dotted

# name -> (kind, choices or (low, high)); what `facetrust tune` searches by default
DEFAULT_SPACE: dict[str, tuple[str, Any]] = {
    "optim.lr": ("log", (1e-4, 3e-3)),
    "optim.batch_size": ("choice", [16, 32, 64]),
    "aug.strength": ("float", (0.0, 1.5)),
    "data.sbi_ratio": ("float", (0.0, 1.0)),
    "model.arch": ("choice", ["efficientnet_lite0", "mobilenetv2_100"]),
}


def _suggest(trial, name: str, kind: str, spec: Any) -> Any:
    if kind == "log":
        return trial.suggest_float(name, spec[0], spec[1], log=True)
    if kind == "float":
        return trial.suggest_float(name, spec[0], spec[1])
    if kind == "int":
        return trial.suggest_int(name, spec[0], spec[1])
    if kind == "choice":
        return trial.suggest_categorical(name, list(spec))
    raise InputError(f"unknown search kind {kind!r} for {name}")


def tune(
    base: TrainConfig,
    *,
    trials: int = 10,
    space: dict[str, tuple[str, Any]] | None = None,
    sampler: str = "tpe",
    storage: str | None = None,
    study_name: str = "facetrust-tune",
    prune: bool = True,
    progress: bool = False,
):
    """Run an Optuna study; returns it. Trials train into ``<output>/trial_<n>``.

    ``sampler``: ``tpe`` or ``grid`` (grid uses every ``choice`` value and the two ends of
    each numeric range). ``storage`` defaults to ``sqlite:///<output>/optuna.db``, so a study
    can be resumed and inspected. Median pruning stops trials whose val AUC lags.
    """
    import optuna

    from facetrust.train.loop import Trainer

    space = space or DEFAULT_SPACE
    out = Path(base.output)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'optuna.db').resolve()}"
    if sampler == "tpe":
        samp = optuna.samplers.TPESampler(seed=base.seed)
    elif sampler == "grid":
        grid = {
            k: (list(v) if kind == "choice" else [v[0], v[1]]) for k, (kind, v) in space.items()
        }
        samp = optuna.samplers.GridSampler(grid, seed=base.seed)
        trials = min(trials, len(list(itertools.product(*grid.values()))))
    else:
        raise InputError(f"unknown sampler {sampler!r}: use tpe or grid")
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=2) if prune else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=samp,
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )

    def objective(trial) -> float:
        d = base.model_dump(mode="json")
        for name, (kind, spec) in space.items():
            set_dotted(d, name, _suggest(trial, name, kind, spec))
        d["output"] = str(out / f"trial_{trial.number}")
        cfg = TrainConfig.model_validate(d)
        result = Trainer(cfg, progress=progress, trial=trial).run()
        best = max(h["val_auc"] for h in result.history)
        trial.set_user_attr("checkpoint", str(result.best))
        return best

    study.optimize(objective, n_trials=trials, catch=())
    write_best_config(study, base, space)
    return study


def write_best_config(study, base: TrainConfig, space: dict[str, tuple[str, Any]]) -> Path | None:
    """Write ``<output>/best.yaml``: the base config with the best trial's values, training
    into ``<output>/best`` (``facetrust train -c <output>/best.yaml`` reruns it); a comment
    names the trial and its val AUC. None (nothing written) when no trial finished."""
    import yaml

    done = [t for t in study.trials if t.value is not None]
    if not done:
        return None
    best = study.best_trial
    out = Path(base.output)
    d = base.model_dump(mode="json")
    for name in space:
        if name in best.params:
            set_dotted(d, name, best.params[name])
    d["output"] = str(out / "best")
    cfg = TrainConfig.model_validate(d)  # the file must load as it is written
    head = (
        f"# best of {len(done)} finished trials: trial {best.number}, val AUC {best.value:.4f}"
        f"\n# checkpoint: {best.user_attrs.get('checkpoint', '-')}"
        f"\n# rerun: facetrust train -c {out / 'best.yaml'}\n"
    )
    from facetrust.files import atomic_write_bytes

    body = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    return atomic_write_bytes(out / "best.yaml", (head + body).encode("utf-8"))
