"""Experiment tracking: MLflow (optional extra) or nothing. Both have the same methods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facetrust.errors import InputError

MISSING = (
    "MLflow tracking needs the 'tracking' extra: `uv sync --extra tracking` "
    "(or `pip install 'facetrust[tracking]'`)"
)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class NullTracker:
    """Tracks nothing (tracking off)."""

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def log_artifact(self, path: str | Path, folder: str | None = None) -> None: ...
    def close(self, status: str = "FINISHED") -> None: ...


class MlflowTracker(NullTracker):
    """Logs params, per-epoch metrics, plots and checkpoints to MLflow.

    ``uri`` defaults to a local SQLite store ``sqlite:///<output>/mlflow.db``; pass a server URL
    (``http://host:5000``) to log remotely.
    """

    def __init__(
        self,
        uri: str,
        experiment: str,
        run_name: str | None = None,
        artifacts: Path | None = None,
    ) -> None:
        try:
            import mlflow
        except ImportError:
            raise InputError(MISSING) from None
        self._mlflow = mlflow
        mlflow.set_tracking_uri(uri)
        if artifacts is not None and mlflow.get_experiment_by_name(experiment) is None:
            # keep artifacts beside the local store, not in ./mlruns of the working directory
            mlflow.create_experiment(experiment, artifact_location=artifacts.resolve().as_uri())
        mlflow.set_experiment(experiment)
        self.run = mlflow.start_run(run_name=run_name)
        self.uri = uri

    def log_params(self, params: dict[str, Any]) -> None:
        flat = {k: ("" if v is None else str(v))[:500] for k, v in flatten(params).items()}
        self._mlflow.log_params(flat)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        self._mlflow.log_metrics(clean, step=step)

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path=folder)

    def close(self, status: str = "FINISHED") -> None:
        self._mlflow.end_run(status=status)


def make_tracker(enabled: bool, uri: str | None, experiment: str, output: Path, name: str | None):
    if not enabled:
        return NullTracker()
    if uri:
        return MlflowTracker(uri, experiment, run_name=name)
    local = f"sqlite:///{(output / 'mlflow.db').resolve()}"
    return MlflowTracker(local, experiment, run_name=name, artifacts=output / "mlartifacts")
