"""``facetrust threshold``: a decision threshold from a folder of known-real images, usable
with ``detect --threshold``; bad files reported, never fatal to the rest."""

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from facetrust.cli import app

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


def _reals(folder: Path, astronaut: np.ndarray, n: int = 6) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):  # the same face, lit differently: different probabilities
        img = np.clip(astronaut.astype(np.float32) * (0.6 + 0.15 * i), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"real{i}.jpg", quality=90)
    return folder


def test_threshold_from_reals_holds_their_rate_with_detect(tiny_checkpoint, tmp_path, astronaut):
    folder = _reals(tmp_path / "reals", astronaut)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 90, 3), np.uint8)).save(
        folder / "noise.png"
    )
    args = ["threshold", str(folder), "--fpr", "0.2", "--json", "-m", str(tiny_checkpoint)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n"] == 6 and out["no_face"] == 1 and out["failed"] == 0 and out["files"] == 7
    assert out["called_fake"] <= 0.2 and out["few"] is True and out["model"] == "tiny-test"
    # detect with that threshold calls the same share of these files fake
    res = runner.invoke(
        app,
        ["detect", str(folder), "--json", "--uncertain-band", "0", "-m", str(tiny_checkpoint)]
        + ["--threshold", str(out["threshold"])],
    )
    rows = [json.loads(x) for x in res.stdout.splitlines() if x.strip()]
    fakes = [r for r in rows if r["label"] == "fake"]
    assert len(fakes) / 6 == out["called_fake"] > 0
    # the plain summary: the threshold, the interval and how to use it; a warning for few files
    res = runner.invoke(app, args[:-3] + ["-m", str(tiny_checkpoint)])
    assert res.exit_code == 0, res.output
    assert f"threshold {out['threshold']:.6f}" in res.stdout and "expect" in res.stdout
    assert "facetrust detect --threshold" in res.stdout
    assert "only 6 files" in res.stderr


def test_threshold_reports_bad_files_and_exits_1(tiny_checkpoint, tmp_path, astronaut):
    folder = _reals(tmp_path / "reals", astronaut, n=3)
    (folder / "broken.jpg").write_bytes(EXAMPLE.read_bytes()[:2000])
    res = runner.invoke(
        app,
        ["threshold", str(folder), str(tmp_path / "nope.jpg"), "--json"]
        + ["-m", str(tiny_checkpoint)],
    )
    assert res.exit_code == 1
    out = json.loads(res.stdout)  # the threshold of the files that could be read
    assert out["n"] == 3 and out["failed"] == 2 and out["files"] == 5
    assert "broken.jpg" in res.stderr and "nope.jpg: file not found" in res.stderr


def test_threshold_without_any_face_or_file_fails_in_one_line(tiny_checkpoint, tmp_path):
    folder = tmp_path / "noface"
    folder.mkdir()
    Image.fromarray(np.full((80, 80, 3), 127, np.uint8)).save(folder / "grey.png")
    res = runner.invoke(app, ["threshold", str(folder), "-m", str(tiny_checkpoint)])
    assert res.exit_code == 1 and res.stderr.startswith("error: no face in the 1 files")
    assert len(res.stderr.strip().splitlines()) == 1
    res = runner.invoke(app, ["threshold", str(tmp_path / "empty-nothing")])
    assert res.exit_code == 2 and "no image or video files" in res.stderr
    res = runner.invoke(app, ["threshold", str(folder), "--fpr", "0.9"])
    assert res.exit_code == 2


def test_an_internal_error_on_one_file_does_not_lose_the_others(
    tiny_checkpoint, tmp_path, astronaut, monkeypatch
):
    from facetrust.detect import Detector

    folder = _reals(tmp_path / "reals", astronaut, n=3)
    score = Detector.__call__

    def flaky(self, item, *a, **k):
        if str(item).endswith("real1.jpg"):
            raise RuntimeError("decoder crashed")
        return score(self, item, *a, **k)

    monkeypatch.setattr(Detector, "__call__", flaky)
    res = runner.invoke(app, ["threshold", str(folder), "--json", "-m", str(tiny_checkpoint)])
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert out["n"] == 2 and out["failed"] == 1
    assert "real1.jpg: internal error: RuntimeError: decoder crashed" in res.stderr
