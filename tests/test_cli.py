import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facetrust.cli import app

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


def lines(out: str) -> list[dict]:
    return [json.loads(x) for x in out.splitlines() if x.strip()]


def test_detect_folder_json_mixed_good_and_bad(tiny_checkpoint, tmp_path, face_video, astronaut):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(EXAMPLE, folder / "a.jpg")
    Image.fromarray(astronaut[:, :, 0]).save(folder / "sub" / "gray.png")
    shutil.copy(face_video, folder / "sub" / "clip.mp4")
    (folder / "broken.jpg").write_bytes(EXAMPLE.read_bytes()[:2000])
    (folder / "notes.txt").write_text("ignored: not media")
    res = runner.invoke(app, ["detect", str(folder), "--json", "--model", str(tiny_checkpoint)])
    assert res.exit_code == 1, res.output
    rows = {Path(r["path"]).name: r for r in lines(res.stdout)}
    assert set(rows) == {"a.jpg", "gray.png", "clip.mp4", "broken.jpg"}
    assert "error" in rows["broken.jpg"]
    for name in ("a.jpg", "gray.png"):
        r = rows[name]
        assert r["kind"] == "image" and len(r["faces"]) == 1
        assert {"path", "faces", "fake_probability", "label", "processing_time_s", "model"} <= set(
            r
        )
    v = rows["clip.mp4"]
    assert v["kind"] == "video" and v["frames_analyzed"] == 16
    assert {"frame_predictions", "consistency"} <= set(v)


def test_detect_all_good_exits_zero_and_table(tiny_checkpoint):
    res = runner.invoke(app, ["detect", str(EXAMPLE), "--model", str(tiny_checkpoint)])
    assert res.exit_code == 0, res.output
    assert "astronaut.jpg" in res.stdout and "tiny-test" in res.stdout


def test_missing_file_is_reported_and_exit_1(tiny_checkpoint, tmp_path):
    res = runner.invoke(
        app,
        ["detect", str(EXAMPLE), str(tmp_path / "nope.jpg"), "--json", "-m", str(tiny_checkpoint)],
    )
    assert res.exit_code == 1
    rows = lines(res.stdout)
    assert len(rows) == 2 and rows[0]["error"] == "file not found"


def test_no_face_label(tiny_checkpoint, tmp_path):
    p = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 100, 3), np.uint8)).save(p)
    res = runner.invoke(app, ["detect", str(p), "--json", "-m", str(tiny_checkpoint)])
    assert res.exit_code == 0
    (row,) = lines(res.stdout)
    assert row["label"] == "no_face" and row["fake_probability"] is None


def test_usage_errors_exit_2(tiny_checkpoint):
    assert runner.invoke(app, ["detect"]).exit_code == 2
    res = runner.invoke(
        app, ["detect", str(EXAMPLE), "--threshold", "3", "-m", str(tiny_checkpoint)]
    )
    assert res.exit_code == 2
    res = runner.invoke(
        app, ["detect", str(EXAMPLE), "--device", "tpu", "-m", str(tiny_checkpoint)]
    )
    assert res.exit_code == 2 and "unknown device" in res.stderr


def test_no_trained_model_says_so(monkeypatch):
    from facetrust.models import zoo

    monkeypatch.setattr(zoo, "shipped_models", lambda: {})
    res = runner.invoke(app, ["detect", str(EXAMPLE)])
    assert res.exit_code == 2
    assert "no trained model is installed" in res.stderr
    assert res.stdout == ""


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.startswith("facetrust ")


@pytest.mark.parametrize("bad", ["zero.jpg", "bomb.png"])
def test_bad_single_files(tiny_checkpoint, tmp_path, bad):
    p = tmp_path / bad
    if bad == "zero.jpg":
        p.write_bytes(b"")
    else:
        Image.new("1", (12000, 12000)).save(p)  # 144 MP, a few KB on disk
    res = runner.invoke(app, ["detect", str(p), "--json", "-m", str(tiny_checkpoint)])
    assert res.exit_code == 1
    (row,) = lines(res.stdout)
    assert "error" in row and "\n" not in row["error"]


def test_explain_without_a_face_says_so_and_writes_nothing(tiny_checkpoint, tmp_path):
    p = tmp_path / "noise.png"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(p)
    out = tmp_path / "heat.png"
    res = runner.invoke(app, ["explain", str(p), "-o", str(out), "-m", str(tiny_checkpoint)])
    assert res.exit_code == 1 and "no face found" in res.output and not out.exists()


def test_threads_are_set_once_for_every_command(tiny_checkpoint, monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        res = runner.invoke(
            app, ["--threads", "1", "detect", str(EXAMPLE), "-m", str(tiny_checkpoint)]
        )
        assert res.exit_code == 0 and torch.get_num_threads() == 1
        res = runner.invoke(app, ["--threads", "0", "detect", str(EXAMPLE)])
        assert res.exit_code == 2  # not a thread count
        monkeypatch.setenv("FACETRUST_THREADS", "2")
        res = runner.invoke(app, ["detect", str(EXAMPLE), "-m", str(tiny_checkpoint)])
        assert res.exit_code == 0 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
