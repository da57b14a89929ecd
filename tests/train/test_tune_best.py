"""``facetrust tune`` writes the best trial's config to ``<output>/best.yaml``."""

import optuna
import yaml

from facetrust.train.config import load_config
from facetrust.train.tune import write_best_config

OPT = ["optim.lr=0.5", "optim.epochs=7"]
SPACE = {"optim.lr": ("log", (1e-4, 1e-2)), "model.arch": ("choice", ["tiny_cnn", "a", "b"])}


def _study(values):
    study = optuna.create_study(direction="maximize")
    dists = {
        "optim.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
        "model.arch": optuna.distributions.CategoricalDistribution(["tiny_cnn", "a", "b"]),
    }
    for i, v in enumerate(values):
        study.add_trial(
            optuna.trial.create_trial(
                params={"optim.lr": 1e-3 * (i + 1), "model.arch": "tiny_cnn"},
                distributions=dists,
                value=v,
                user_attrs={"checkpoint": f"runs/t/trial_{i}/best.safetensors"},
            )
        )
    return study


def test_best_yaml_holds_the_best_trial_and_loads(tmp_path):
    base = load_config(None, [f"output={tmp_path}", "data.train_manifest=m.jsonl"] + OPT)
    path = write_best_config(_study([0.61, 0.83, 0.70]), base, SPACE)
    assert path == tmp_path / "best.yaml"
    text = path.read_text()
    assert text.startswith("# best of 3 finished trials: trial 1, val AUC 0.8300")
    assert "trial_1/best.safetensors" in text
    tree = yaml.safe_load(text)
    assert tree["optim"]["lr"] == 2e-3 and tree["optim"]["epochs"] == 7  # best + base values
    assert tree["output"] == str(tmp_path / "best")
    again = load_config(path, [])  # `facetrust train -c best.yaml` reads it
    assert again.optim.lr == 2e-3 and again.model.arch == "tiny_cnn"


def test_nothing_written_without_a_finished_trial(tmp_path):
    base = load_config(None, [f"output={tmp_path}", "data.train_manifest=m.jsonl"])
    assert write_best_config(optuna.create_study(direction="maximize"), base, SPACE) is None
    assert not (tmp_path / "best.yaml").exists()
