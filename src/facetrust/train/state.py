"""The state of a training run: the one owner of saving and resuming.

``TrainState`` holds the run's counters (epochs done, step, best epoch, history) and the
stateful parts (model, optimiser, schedulers, EMA weights, gradient scaler, the global torch
RNG). ``save`` writes all of them to ``<output>/state.pt`` after each epoch; ``load`` puts every
part back. Both walk the same ``parts`` mapping and the same counter fields, so what is saved is
what is resumed. The best epoch's weights are kept beside it (``best_weights.pt``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import torch

from facetrust.errors import InputError
from facetrust.files import atomic_write

__all__ = ["BEST_FILE", "STATE_FILE", "GlobalTorchRNG", "Stateful", "TrainState"]

STATE_FILE = "state.pt"
BEST_FILE = "best_weights.pt"
FORMAT = 2  # version of the state file layout


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class GlobalTorchRNG:
    """The global torch CPU generator as a saveable part (dropout and pseudo-fakes draw from
    it; the trainer seeds it at the start of ``run``)."""

    def state_dict(self) -> dict[str, Any]:
        return {"cpu": torch.get_rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["cpu"])


@dataclass
class TrainState:
    """Counters of a run plus its stateful ``parts`` (name -> object with ``state_dict``).

    ``epoch`` counts the epochs done; ``best_epoch`` is the 0-based index of the best one
    (-1 before any); ``history`` holds one record per epoch.
    """

    folder: Path
    parts: dict[str, Stateful] = field(default_factory=dict, repr=False)
    epoch: int = 0
    step: int = 0
    best_auc: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    _NOT_COUNTERS = ("folder", "parts")

    @property
    def path(self) -> Path:
        return Path(self.folder) / STATE_FILE

    @property
    def best_path(self) -> Path:
        return Path(self.folder) / BEST_FILE

    @classmethod
    def exists(cls, folder: str | Path) -> bool:
        return (Path(folder) / STATE_FILE).is_file()

    def counters(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._NOT_COUNTERS
        }

    def save(self) -> Path:
        """Write the counters and every part's ``state_dict`` (atomically)."""
        blob = {
            "format": FORMAT,
            "counters": self.counters(),
            "parts": {name: part.state_dict() for name, part in self.parts.items()},
        }
        return atomic_write(self.path, lambda p: torch.save(blob, p))

    def load(self, map_location: str | torch.device = "cpu") -> TrainState:
        """Restore the counters and every part from ``state.pt``."""
        if not self.path.is_file():
            raise InputError(f"nothing to resume in {self.folder} (no {STATE_FILE})")
        blob = torch.load(self.path, map_location=map_location, weights_only=False)
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise InputError(
                f"{self.path} was written by another facetrust version: start a new run"
            )
        saved, wanted = set(blob["parts"]), set(self.parts)
        if saved != wanted:
            raise InputError(
                f"cannot resume: {self.path} holds {sorted(saved)}, this run needs {sorted(wanted)}"
            )
        for name, part in self.parts.items():
            part.load_state_dict(blob["parts"][name])
        for name, value in blob["counters"].items():
            setattr(self, name, value)
        return self

    def record(self, rec: dict[str, Any], val_auc: float, weights: dict[str, Any]) -> bool:
        """Close an epoch: append ``rec``, keep ``weights`` when ``val_auc`` is the best so far
        (returns True then), count epochs without improvement, save the state."""
        self.history.append(rec)
        improved = val_auc > self.best_auc
        if improved:
            self.best_auc, self.best_epoch, self.bad_epochs = val_auc, self.epoch, 0
            atomic_write(self.best_path, lambda p: torch.save(weights, p))
        else:
            self.bad_epochs += 1
        self.epoch += 1
        self.save()
        return improved

    def best_weights(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        return torch.load(self.best_path, map_location=map_location, weights_only=True)
