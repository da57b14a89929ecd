"""The one scoring core: ``facetrust eval`` on a prepared manifest and ``facetrust detect`` give
the same face probability, for a CNN-only and a fused checkpoint."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facetrust.cli import app
from facetrust.data.prepare import prepare
from facetrust.detect import Detector
from facetrust.detect.experts import FrequencyExpert, LinearHead
from facetrust.detect.scoring import FaceScorer, crop_contract
from facetrust.errors import InputError
from facetrust.models import load_checkpoint, read_checkpoint_meta, save_checkpoint
from facetrust.train.evaluate import score_manifest


@pytest.fixture(scope="module")
def fused_checkpoint(tiny_checkpoint, tmp_path_factory):
    """The tiny CNN fused with a frequency expert (a fixed head), crops of 48 px."""
    model, meta = load_checkpoint(tiny_checkpoint)
    head = LinearHead(np.zeros(50), np.ones(50), np.linspace(-0.05, 0.05, 50), 0.1)
    experts = {
        "frequency": FrequencyExpert(head).to_spec(),
        "fusion": {"inputs": ["cnn", "frequency"], "weight": [1.5, 0.7], "bias": -0.2},
    }
    fused = meta.model_copy(update={"experts": experts, "crop_size": 48, "name": "fused-tiny"})
    return save_checkpoint(tmp_path_factory.mktemp("fused") / "fused.safetensors", model, fused)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, astronaut):
    root = tmp_path_factory.mktemp("photos")
    (root / "real").mkdir()
    Image.fromarray(astronaut).save(root / "real" / "astronaut.png")
    return root


@pytest.mark.parametrize("which", ["cnn", "fused"])
def test_eval_and_detect_agree_on_the_same_face(
    which, tiny_checkpoint, fused_checkpoint, photo_folder, tmp_path
):
    ckpt = tiny_checkpoint if which == "cnn" else fused_checkpoint
    contract = crop_contract(read_checkpoint_meta(ckpt))
    manifest = tmp_path / "m.jsonl"
    prepare(photo_folder, manifest, crop_size=contract.size, margin=contract.margin)
    rows, probs, _, _ = score_manifest(manifest, ckpt, device="cpu")
    assert len(rows) == 1 and rows[0].crop_size == contract.size

    runner = CliRunner()
    res = runner.invoke(
        app, ["detect", str(photo_folder / "real" / "astronaut.png"), "-m", str(ckpt), "--json"]
    )
    assert res.exit_code == 0, res.output
    detected = json.loads(res.output.strip().splitlines()[-1])
    assert len(detected["faces"]) == 1
    # the JSON rounds to 4 decimals; the probability itself agrees far closer
    assert detected["faces"][0]["fake_probability"] == pytest.approx(probs[0], abs=1e-4)
    det = Detector(ckpt, device="cpu")(photo_folder / "real" / "astronaut.png")
    assert det.faces[0].fake_probability == pytest.approx(probs[0], abs=1e-6)
    if which == "fused":
        assert set(detected["faces"][0]["experts"]) == {"cnn", "frequency"}


def test_eval_refuses_crops_cut_by_another_contract(tiny_checkpoint, photo_folder, tmp_path):
    manifest = tmp_path / "m.jsonl"
    prepare(photo_folder, manifest, crop_size=64, margin=0.3)
    with pytest.raises(InputError, match=r"64 px, margin 0.3.*expects 32 px, margin 0.2"):
        score_manifest(manifest, tiny_checkpoint, device="cpu")


def test_scorer_fuses_calibrates_and_restores_train_mode(fused_checkpoint):
    model, meta = load_checkpoint(fused_checkpoint)
    model.train()
    scorer = FaceScorer(model, meta)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(3)]
    s = scorer(crops)
    assert model.training  # put back as it was
    assert s.inputs == ["cnn", "frequency"] and s.logits.shape == (3, 2)
    np.testing.assert_allclose(s.fused, s.logits @ [1.5, 0.7] - 0.2)
    np.testing.assert_allclose(s.probability, 1 / (1 + np.exp(-s.fused / 1.5)))  # temperature
    assert len(scorer([])) == 0
    probs = s.expert_probabilities()
    assert probs is not None and set(probs[0]) == {"cnn", "frequency"}
