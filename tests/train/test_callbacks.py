"""Callbacks of the training loop: faults, epoch log, tracking and pruning, in isolation."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from facetrust.train.callbacks import (
    Callback,
    CallbackList,
    EpochLog,
    FaultCallback,
    OptunaPruning,
    TrackingCallback,
)
from facetrust.train.faults import FaultConfig, FaultInjector
from facetrust.train.losses import bce_loss

REC = {
    "epoch": 2, "step": 8, "train_loss": 0.5, "train_bce": 0.5, "val_auc": 0.75,
    "val_loss": 0.6, "lr": 1e-3, "seconds": 1.0,
}  # fmt: skip


def test_fault_callback_applies_the_injector():
    cb = FaultCallback(FaultInjector(FaultConfig(shuffle_labels=True, wrong_loss=True)))
    x, y = torch.zeros(64, 3), (torch.arange(64) % 2).float()
    x2, y2 = cb.on_batch(x, y, step=3)
    assert x2 is x and not torch.equal(y2, y) and torch.equal(y2.sort().values, y.sort().values)
    z = torch.randn(64)
    assert torch.allclose(cb.wrap_loss(bce_loss)(z, y), bce_loss(z, 1 - y))


def test_callback_list_chains_batches_and_losses_in_order():
    class AddOne(Callback):
        def on_batch(self, x, y, step):
            return x + 1, y

        def wrap_loss(self, fn):
            return lambda *a: fn(*a) * 10

    class Double(Callback):
        def on_batch(self, x, y, step):
            return x * 2, y

    cbs = CallbackList([AddOne(), None, Double()])
    x, _ = cbs.on_batch(torch.ones(1), torch.zeros(1), 0)
    assert x.item() == 4  # (1 + 1) * 2
    assert cbs.wrap_loss(lambda v: v + 1)(1) == 20
    assert repr(cbs) == "CallbackList(AddOne, Double)"


def test_epoch_log_appends_json_lines(tmp_path, capsys):
    log = EpochLog(tmp_path / "metrics.jsonl", verbose=True)
    log.on_record(REC)
    log.on_record({**REC, "epoch": 3})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [2, 3]
    assert "epoch 2: train_loss 0.5000  val_auc 0.7500" in capsys.readouterr().out


def test_tracking_callback_logs_params_records_and_results(tmp_path):
    calls = []

    class Tracker:
        def log_params(self, p):
            calls.append(("params", p))

        def log_metrics(self, m, step):
            calls.append(("metrics", step, m))

        def log_artifact(self, path, folder=None):
            calls.append(("artifact", str(path), folder))

        def close(self, status):
            calls.append(("close", status))

    (tmp_path / "report" / "val").mkdir(parents=True)
    (tmp_path / "report" / "val" / "roc.png").write_bytes(b"png")
    cb = TrackingCallback(Tracker(), {"optim": {"lr": 0.1}})
    cb.on_train_start(None)
    cb.on_record(REC)
    result = SimpleNamespace(
        best=tmp_path / "best.safetensors", output=tmp_path, epochs_run=2,
        metrics={"val": {"face": {"auc": 0.8, "n": 10}, "note": "x"}},
    )  # fmt: skip
    cb.on_train_end(result)
    cb.close("FINISHED")
    assert calls[0] == ("params", {"optim": {"lr": 0.1}})
    assert calls[1][:2] == ("metrics", 2) and calls[1][2]["val_auc"] == 0.75
    assert ("artifact", str(tmp_path / "best.safetensors"), None) in calls
    assert ("artifact", str(tmp_path / "report" / "val" / "roc.png"), "val") in calls
    assert ("metrics", 2, {"val.face.auc": 0.8, "val.face.n": 10.0}) in calls
    assert calls[-1] == ("close", "FINISHED")


def test_optuna_pruning_reports_and_prunes():
    import optuna

    class Trial:
        def __init__(self, prune):
            self.prune, self.reports = prune, []

        def report(self, value, step):
            self.reports.append((value, step))

        def should_prune(self):
            return self.prune

    keep = Trial(False)
    OptunaPruning(keep).on_record(REC)
    assert keep.reports == [(0.75, 1)]
    with pytest.raises(optuna.TrialPruned):
        OptunaPruning(Trial(True)).on_record(REC)
