"""End-to-end training on a tiny synthetic manifest with ``tiny_cnn`` (seconds per run)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from facetrust.data.manifest import ManifestRow, write_manifest
from facetrust.errors import InputError, ModelError
from facetrust.models import load_checkpoint, read_checkpoint_meta
from facetrust.train.config import load_config
from facetrust.train.loop import Trainer, TrainingInterrupted


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory, astronaut):
    """60 crops (64 px) of the astronaut: reals lightly varied, fakes with a noise texture,
    three sources, each image its own video; 468 landmarks saved for SBI."""
    from facetrust.faces import FaceAligner, FaceDetector
    from facetrust.faces.align import transform_points

    root = tmp_path_factory.mktemp("tinyds")
    face = FaceDetector()(astronaut)[0]
    aligner = FaceAligner(size=64, margin=0.2)
    base = aligner(astronaut, face).astype(np.float32)
    lm = transform_points(face.landmarks[:, :2], aligner.matrix(face)).astype(np.float16)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        label = "fake" if i % 2 else "real"
        img = base * rng.uniform(0.8, 1.2) + rng.normal(0, 3, base.shape)
        if label == "fake":
            img += rng.normal(0, 30, (16, 16, 3)).repeat(4, 0).repeat(4, 1)
        crop = root / f"c{i}.png"
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(crop)
        np.save(root / f"c{i}.npy", lm)
        rows.append(
            ManifestRow(
                path=f"orig{i}.jpg",
                label=label,
                source=f"src{i % 3}",
                video_id=f"v{i}",
                crop=crop.name,
                landmarks=f"c{i}.npy",
            )
        )
    return write_manifest(root / "manifest.jsonl", rows)


def cfg_for(manifest, out, *extra):
    return load_config(
        None,
        [
            f"data.train_manifest={manifest}",
            f"output={out}",
            "model.arch=tiny_cnn",
            "model.pretrained=false",
            "model.input_size=48",
            "optim.epochs=2",
            "optim.batch_size=8",
            "optim.warmup_steps=2",
            "optim.lr=0.003",
            "data.split_by=video",
            "data.val_fraction=0.25",
            "data.calib_fraction=0.25",
            "name=tiny",
            "calibration.min_per_class=2",  # ~7 per class in this tiny calib split
            *extra,
        ],
    )


def test_train_end_to_end(tiny_manifest, tmp_path):
    cfg = cfg_for(tiny_manifest, tmp_path / "run", "optim.ema=0.9", "data.sbi_ratio=0.5")
    res = Trainer(cfg, progress=False).run()
    assert res.epochs_run == 2 and res.best.is_file() and res.final.is_file()
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2
    meta = read_checkpoint_meta(res.best)
    assert meta.arch == "tiny_cnn" and meta.input_size == 48 and meta.name == "tiny"
    assert meta.calibration.method == "temperature"
    assert 0.0 <= meta.threshold <= 1.0 and "FPR" in meta.threshold_rule
    assert "val" in meta.metrics and meta.metrics["val"]["face"]["auc"] is not None
    assert set(meta.training_data) >= {"train", "val", "calib"}
    model, _ = load_checkpoint(res.best)
    assert not model.training
    report = json.loads((tmp_path / "run" / "report" / "val" / "report.json").read_text())
    assert report["face"]["n"] > 0


def test_recalibrate_refits_on_the_calib_split(tiny_manifest, tmp_path):
    from typer.testing import CliRunner

    from facetrust.cli import app

    cfg = cfg_for(tiny_manifest, tmp_path / "run", "calibration.method=platt")
    res = Trainer(cfg, progress=False).run()
    out = tmp_path / "recal"
    cfg2 = cfg_for(tiny_manifest, out, "calibration.threshold_rule=fpr:0.2")
    path, metrics = Trainer(cfg2, progress=False).recalibrate(res.best)
    old, new = read_checkpoint_meta(res.best), read_checkpoint_meta(path)
    assert old.calibration.method == "platt" and new.calibration.method == "temperature"
    assert "0.2" in new.threshold_rule and metrics["val"]["face"]["n"] > 0
    assert new.metrics["history"] == old.metrics["history"]
    assert (out / "config.yaml").is_file()
    m_old, _ = load_checkpoint(res.best)
    m_new, _ = load_checkpoint(path)
    for a, b in zip(m_old.state_dict().values(), m_new.state_dict().values(), strict=True):
        assert (a == b).all()  # the weights are untouched
    with pytest.raises(InputError, match="overwrite"):
        Trainer(cfg, progress=False).recalibrate(res.best)
    with pytest.raises(InputError, match="px"):
        Trainer(cfg_for(tiny_manifest, out, "model.input_size=32"), progress=False).recalibrate(
            res.best
        )
    saved = tmp_path / "run" / "config.yaml"
    runner = CliRunner()
    cli = runner.invoke(app, ["calibrate", str(res.best), "-c", str(saved), f"output={out}2"])
    assert cli.exit_code == 0, cli.output
    assert "recalibrated checkpoint" in cli.output and "val: AUC" in cli.output
    cli = runner.invoke(app, ["calibrate", str(tmp_path / "nope.safetensors"), "-c", str(saved)])
    assert cli.exit_code == 2 and len(cli.output.strip().splitlines()) == 1


def test_resume_continues_from_checkpoint(tiny_manifest, tmp_path):
    out = tmp_path / "run"
    cfg = cfg_for(tiny_manifest, out, "optim.epochs=3")
    with pytest.raises(TrainingInterrupted):
        Trainer(cfg, progress=False).run(stop_after_epochs=1)
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    with pytest.raises(InputError, match="resume"):
        Trainer(cfg, progress=False).run()  # a run is there: must ask for --resume
    res = Trainer(cfg, progress=False).run(resume=True)
    assert res.epochs_run == 3
    assert res.history[0] == first  # epoch 1 was not redone
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    assert res.history[1]["step"] > first["step"]
    # what was saved is what was resumed: the same weights as a run never interrupted
    whole = Trainer(cfg_for(tiny_manifest, tmp_path / "whole", "optim.epochs=3"), progress=False)
    a, _ = load_checkpoint(whole.run().final)
    b, _ = load_checkpoint(res.final)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


def test_resume_refuses_changed_config(tiny_manifest, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        Trainer(cfg_for(tiny_manifest, out), progress=False).run(stop_after_epochs=1)
    with pytest.raises(InputError, match="differs"):
        Trainer(cfg_for(tiny_manifest, out, "optim.lr=0.1", "loss.bce=0.5"), progress=False).run(
            resume=True
        )


def test_init_from_starts_at_the_checkpoints_weights(tiny_manifest, tmp_path):
    src = Trainer(cfg_for(tiny_manifest, tmp_path / "src", "optim.epochs=1"), progress=False).run()
    start, _ = load_checkpoint(src.best)
    # a learning rate of ~0 keeps the weights where they started: at the checkpoint's
    still = cfg_for(
        tiny_manifest, tmp_path / "ft", "optim.epochs=1", "optim.lr=1e-12",
        f"model.init_from={src.best}",
    )  # fmt: skip
    tuned, _ = load_checkpoint(Trainer(still, progress=False).run().final)
    fresh_cfg = cfg_for(tiny_manifest, tmp_path / "fresh", "optim.epochs=1", "optim.lr=1e-12")
    fresh, _ = load_checkpoint(Trainer(fresh_cfg, progress=False).run().final)
    a, b, c = (dict(m.named_parameters()) for m in (start, tuned, fresh))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not all(torch.allclose(a[k], c[k], atol=1e-6) for k in a)


def test_init_from_refuses_another_architecture(tiny_manifest, tmp_path):
    src = Trainer(cfg_for(tiny_manifest, tmp_path / "src", "optim.epochs=1"), progress=False).run()
    other = cfg_for(
        tiny_manifest, tmp_path / "att", "model.arch=tiny_att", f"model.init_from={src.best}"
    )
    with pytest.raises(InputError, match="holds tiny_cnn weights; the config trains tiny_att"):
        Trainer(other, progress=False).run()
    att = Trainer(
        cfg_for(tiny_manifest, tmp_path / "att1", "optim.epochs=1", "model.arch=tiny_att"),
        progress=False,
    ).run()
    gated = cfg_for(
        tiny_manifest, tmp_path / "att2", "model.arch=tiny_att", "model.args.att_width=8",
        f"model.init_from={att.best}",
    )  # fmt: skip
    with pytest.raises(InputError, match="does not fit model.args"):
        Trainer(gated, progress=False).run()
    missing = cfg_for(
        tiny_manifest, tmp_path / "m", f"model.init_from={tmp_path / 'no.safetensors'}"
    )
    with pytest.raises(ModelError, match="neither a checkpoint file nor a shipped model"):
        Trainer(missing, progress=False).run()


def test_leave_one_source_out_reports_test(tiny_manifest, tmp_path):
    cfg = cfg_for(tiny_manifest, tmp_path / "run", "data.leave_out=[src2]", "optim.epochs=1")
    res = Trainer(cfg, progress=False).run()
    test = res.metrics["test"]
    assert test["face"]["n"] == 20
    assert set(test["per_source"]) == {"src2"}
    assert (tmp_path / "run" / "report" / "test" / "roc.png").is_file()


def _state(out):
    return torch.load(out / "state.pt", weights_only=False)


def _loss_terms_add_up(res, weights):
    h = res.history[0]
    total = sum(w * h[f"train_{k}"] for k, w in weights.items())
    assert all(h[f"train_{k}"] > 0 for k in weights)
    assert h["train_loss"] == pytest.approx(total, rel=1e-5)


def _check_kl(res, out):
    _loss_terms_add_up(res, {"bce": 1.0, "kl": 0.5})  # the consistency term is in the loss


def _check_supcon(res, out):
    _loss_terms_add_up(res, {"bce": 1.0, "supcon": 0.2})


def _check_sgd_plateau(res, out):
    parts = _state(out)["parts"]
    opt = parts["optimizer"]
    assert opt["param_groups"][0]["nesterov"] is True
    assert all("momentum_buffer" in v for v in opt["state"].values())  # SGD, not AdamW
    assert "plateau" in parts and parts["plateau"]["mode"] == "max"


def _check_faults(res, out):
    meta = read_checkpoint_meta(res.best)
    assert meta.training_data["faults"] == {
        "label_noise": 0.2,
        "shuffle_labels": True,
        "zero_grad_every_n": 2,
    }


def _check_sbi_only(res, out):
    train = read_checkpoint_meta(res.best).training_data["train"]
    reals = sum(v["real"] for k, v in train.items() if k != "sbi")
    assert all(v["fake"] == 0 for k, v in train.items() if k != "sbi")  # no real fakes
    assert train["sbi"] == {"real": 0, "fake": reals}  # one pseudo-fake per real face


def _check_freeze(res, out):
    from facetrust.models import create_model

    torch.manual_seed(0)  # the trainer initialises its model from cfg.seed = 0
    init = create_model("tiny_cnn").state_dict()
    trained, _ = load_checkpoint(res.final)
    for k, v in trained.state_dict().items():
        if k.startswith("blocks.0.0."):  # the frozen convolution
            assert torch.equal(v, init[k]), k
        elif k.endswith("weight") and not k.startswith("blocks.0"):
            assert not torch.equal(v, init[k]), k


@pytest.mark.parametrize(
    ("extra", "check"),
    [
        (["loss.kl=0.5"], _check_kl),
        (["loss.supcon=0.2"], _check_supcon),
        (["optim.optimizer=sgd", "optim.schedule=plateau"], _check_sgd_plateau),
        (
            ["faults.shuffle_labels=true", "faults.label_noise=0.2", "faults.zero_grad_every_n=2"],
            _check_faults,
        ),
        (["data.sbi_ratio=1.0", "data.sbi_only=true"], _check_sbi_only),
        (["optim.freeze=[blocks.0]"], _check_freeze),
    ],
    ids=["kl", "supcon", "sgd-plateau", "faults", "sbi-only", "freeze"],
)
def test_training_variants_do_what_they_say(tiny_manifest, tmp_path, extra, check):
    out = tmp_path / "r"
    res = Trainer(cfg_for(tiny_manifest, out, "optim.epochs=1", *extra), progress=False).run()
    check(res, out)


def test_mlflow_tracking(tiny_manifest, tmp_path):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "run"
    cfg = cfg_for(tiny_manifest, out, "optim.epochs=2", "tracking.mlflow=true")
    Trainer(cfg, progress=False).run()
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("facetrust")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params["optim.lr"] == "0.003"
    assert len(client.get_metric_history(run.info.run_id, "val_auc")) == 2
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"best.safetensors", "val"} <= names
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "val")}
    assert {"val/roc.png", "val/reliability.png"} <= plots


def test_tracking_missing_extra_message(monkeypatch, tmp_path):
    import builtins

    from facetrust.train.tracking import MISSING, make_tracker

    real_import = builtins.__import__

    def no_mlflow(name, *a, **k):
        if name == "mlflow":
            raise ImportError("no mlflow")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    with pytest.raises(InputError) as exc:
        make_tracker(True, None, "x", tmp_path, None)
    assert str(exc.value) == MISSING


def test_bad_config_messages(tmp_path):
    with pytest.raises(InputError, match="optim.lr"):
        load_config(None, ["data.train_manifest=x", "optim.lr=-1"])
    with pytest.raises(InputError, match="key.sub=value"):
        load_config(None, ["oops"])
    (tmp_path / "c.yaml").write_text("data: [unclosed")
    with pytest.raises(InputError, match="YAML"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(InputError, match="unknown"):
        load_config(None, ["data.train_manifest=x", "optim.bogus=1"])


def test_tune_two_trials(tiny_manifest, tmp_path):
    from facetrust.train.tune import tune

    base = cfg_for(tiny_manifest, tmp_path / "tune", "optim.epochs=1")
    space = {"optim.lr": ("log", (1e-3, 1e-2)), "aug.strength": ("float", (0.0, 1.0))}
    study = tune(base, trials=2, space=space)
    assert len(study.trials) == 2 and all(t.value is not None for t in study.trials)
    assert (tmp_path / "tune" / "optuna.db").is_file()
    assert (tmp_path / "tune" / "best.yaml").is_file()  # the best trial's config
    grid = tune(
        base.model_copy(update={"output": str(tmp_path / "grid")}),
        trials=5,
        space={"optim.batch_size": ("choice", [8, 16])},
        sampler="grid",
    )
    assert sorted(t.params["optim.batch_size"] for t in grid.trials) == [8, 16]


def test_crop_contract_is_checked_and_travels(tmp_path):
    """A manifest that records its crop contract is refused when the config's margin or crop
    size differ (both values named); a matching one writes the contract into the checkpoint."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(16):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png"
        )
        rows.append(
            ManifestRow(
                path=f"{i}.jpg", label="fake" if i % 2 else "real", source="s", video_id=f"v{i}",
                crop=f"{i}.png", crop_size=40, crop_margin=0.5, crop_alignment="eyes-level-square",
            )
        )  # fmt: skip
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    with pytest.raises(InputError, match=r"margin 0.5.*model.margin=0.2"):
        Trainer(cfg_for(manifest, tmp_path / "a"), progress=False).run()
    with pytest.raises(InputError, match=r"40 px.*model.crop_size=64"):
        Trainer(
            cfg_for(manifest, tmp_path / "b", "model.margin=0.5", "model.crop_size=64"),
            progress=False,
        ).run()
    cfg = cfg_for(
        manifest, tmp_path / "c", "model.margin=0.5", "optim.epochs=1", "model.input_size=32"
    )
    meta = read_checkpoint_meta(Trainer(cfg, progress=False).run().best)
    assert (meta.crop_size, meta.face_margin, meta.crop_alignment) == (40, 0.5, "eyes-level-square")
    assert load_config(None, ["data.train_manifest=x", "model.margin=2.0"]).model.margin == 2.0
    with pytest.raises(InputError, match="model.margin"):
        load_config(None, ["data.train_manifest=x", "model.margin=2.5"])


def test_checkpoint_name_never_claims_a_shipped_model(monkeypatch, tmp_path):
    from facetrust.models import zoo
    from facetrust.train.build import checkpoint_name

    monkeypatch.setattr(zoo, "shipped_models", lambda: {"facetrust-default": tmp_path / "x"})
    mine = load_config(None, ["data.train_manifest=x", f"output={tmp_path / 'run7'}", "name=mine"])
    assert checkpoint_name(mine) == "mine"
    shipped = mine.model_copy(update={"name": "facetrust-default"})
    with pytest.warns(UserWarning, match="shipped"):
        assert checkpoint_name(shipped) == "run7"
    assert checkpoint_name(mine.model_copy(update={"name": None})) == "run7"


def test_many_passes_per_epoch_warn(tiny_manifest, tmp_path):
    from facetrust.train.build import MAX_PASSES_PER_EPOCH, build_data

    cfg = cfg_for(tiny_manifest, tmp_path / "r")
    n = len(build_data(cfg).dataset)
    many = cfg_for(
        tiny_manifest, tmp_path / "r", f"data.samples_per_epoch={n * (MAX_PASSES_PER_EPOCH + 1)}"
    )
    with pytest.warns(UserWarning, match="repeats the .* training items 21 times"):
        build_data(many)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_data(cfg_for(tiny_manifest, tmp_path / "r", f"data.samples_per_epoch={n * 5}"))


def test_constructing_a_trainer_changes_nothing_global(tiny_manifest, tmp_path):
    threads = torch.get_num_threads()
    rng = torch.get_rng_state()
    cfg = cfg_for(tiny_manifest, tmp_path / "r", "threads=1", "seed=5")
    trainer = Trainer(cfg, progress=False)
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)
    assert not (tmp_path / "r").exists()
    assert "tiny_cnn" in repr(trainer)


def test_callbacks_see_each_stage(tiny_manifest, tmp_path):
    from facetrust.train.callbacks import Callback

    class Recorder(Callback):
        def __init__(self):
            self.calls = []

        def on_train_start(self, trainer):
            self.calls.append("start")

        def on_epoch_end(self, model, epoch):
            self.calls.append(f"epoch_end {epoch}")

        def on_record(self, record):
            self.calls.append(f"record {record['epoch']}")

        def on_train_end(self, result):
            self.calls.append(f"end {result.epochs_run}")

        def close(self, status):
            self.calls.append(status)

    rec = Recorder()
    Trainer(cfg_for(tiny_manifest, tmp_path / "r"), progress=False, callbacks=[rec]).run()
    assert rec.calls == [
        "start", "epoch_end 0", "record 1", "epoch_end 1", "record 2", "end 2", "FINISHED"
    ]  # fmt: skip


def test_train_state_round_trip_and_mismatch(tmp_path):
    from facetrust.train.state import TrainState

    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(2, 3)).sum().backward()
    opt.step()
    st = TrainState(tmp_path, {"model": model, "optimizer": opt}, epoch=2, step=7, best_auc=0.8)
    st.history.append({"epoch": 1})
    st.save()
    model2 = torch.nn.Linear(3, 1)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    back = TrainState(tmp_path, {"model": model2, "optimizer": opt2}).load()
    assert (back.epoch, back.step, back.best_auc, back.history) == (2, 7, 0.8, [{"epoch": 1}])
    assert torch.equal(model2.weight, model.weight)
    assert opt2.state_dict()["state"][0]["momentum_buffer"] is not None
    with pytest.raises(InputError, match="needs"):
        TrainState(tmp_path, {"model": model2}).load()
    with pytest.raises(InputError, match="nothing to resume"):
        TrainState(tmp_path / "empty", {"model": model2}).load()
