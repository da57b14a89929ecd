"""The trained default model ships inside the package and drives `facetrust detect`."""

import json
from pathlib import Path

from typer.testing import CliRunner

from facetrust.cli import app
from facetrust.models import load_checkpoint, read_checkpoint_meta
from facetrust.models.zoo import DEFAULT_MODEL, resolve_model, shipped_models

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


def test_default_model_ships_small_and_self_described():
    path = resolve_model(None)
    assert path == shipped_models()[DEFAULT_MODEL]
    assert path.stat().st_size <= 25 * 1024 * 1024
    meta = read_checkpoint_meta(path)
    assert meta.name == DEFAULT_MODEL
    # calibrated: a temperature on a CNN logit, or a logistic stack fitted on held-out faces
    assert meta.calibration.method != "none" or meta.experts["fusion"]["inputs"][0] == "cnn"
    assert "FPR" in meta.threshold_rule
    assert meta.training_data["train"] and meta.metrics["val"]["face"]["auc"] > 0.5
    model, _ = load_checkpoint(path)
    assert not model.training


def test_readme_main_command_runs_on_the_default_model():
    res = CliRunner().invoke(app, ["detect", str(EXAMPLE), "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert row["model"] == DEFAULT_MODEL and len(row["faces"]) == 1
    assert 0.0 <= row["fake_probability"] <= 1.0 and row["label"] in {"real", "fake"}


def test_the_fast_cnn_ships_beside_the_fused_default():
    shipped = shipped_models()
    assert {"facetrust-default", "facetrust-fast"} <= set(shipped)
    fused, fast = (
        read_checkpoint_meta(shipped[n]) for n in ("facetrust-default", "facetrust-fast")
    )
    assert set(fused.experts["fusion"]["inputs"]) == {"cnn", "clip", "frequency"}
    # the CLIP expert reads class + mean patch tokens of all 12 blocks, each block L2-normalised
    clip = fused.experts["clip"]
    assert (clip["pool"], clip["l2"], clip["layers"]) == ("cls+mean", True, list(range(1, 13)))
    assert not fast.experts and fast.calibration.method in {"temperature", "platt", "isotonic"}
    assert fast.name == "facetrust-fast"
    assert fused.arch == fast.arch and fused.input_size == fast.input_size  # the same CNN
    res = CliRunner().invoke(app, ["detect", str(EXAMPLE), "--json", "-m", "facetrust-fast"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["model"] == "facetrust-fast"
