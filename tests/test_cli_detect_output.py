"""``facetrust detect``'s table (streamed, with the uncertain label and the limits line), its
CSV, and the flags' help."""

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facetrust.cli import CSV_COLUMNS, _StreamTable, app

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


def test_csv_one_row_per_file(tiny_checkpoint, tmp_path):
    res = runner.invoke(
        app, ["detect", str(EXAMPLE), str(tmp_path / "nope.jpg"), "--csv", "-m", tiny_checkpoint]
    )
    assert res.exit_code == 1, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 2
    missing, good = rows
    assert missing["label"] == "error" and missing["error"] == "file not found"
    assert good["path"].endswith("astronaut.jpg") and good["faces"] == "1"
    assert good["model"] == "tiny-test" and len(good["model_sha256"]) == 12
    assert 0 <= float(good["fake_probability"]) <= 1 and good["label"] in {
        "real",
        "fake",
        "uncertain",
    }
    assert good["provenance"] == "none found" and good["error"] == ""


def test_json_and_csv_are_exclusive(tiny_checkpoint):
    res = runner.invoke(app, ["detect", str(EXAMPLE), "--csv", "--json", "-m", tiny_checkpoint])
    assert res.exit_code == 2 and "cannot be used together" in res.stderr


def test_table_shows_uncertain_band_and_limits(tiny_checkpoint):
    res = runner.invoke(app, ["detect", str(EXAMPLE), "--json", "-m", tiny_checkpoint])
    p = json.loads(res.stdout)["fake_probability"] - 0.0005  # a threshold just below it
    res = runner.invoke(
        app, ["detect", str(EXAMPLE), "-m", tiny_checkpoint, "--threshold", f"{p:.4f}"]
    )
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert f"threshold {p:.3f}, uncertain {p - 0.1:.3f}-{p + 0.1:.3f}" in out
    row = next(line for line in out.splitlines() if "astronaut.jpg" in line)
    assert " uncertain " in row
    assert "1 file: 1 uncertain" in out
    # the tiny model's metadata names no training sources: no limits line to show
    assert "limits:" not in out
    res = runner.invoke(
        app,
        ["detect", str(EXAMPLE), "-m", tiny_checkpoint, "--threshold", f"{p:.4f}"]
        + ["--uncertain-band", "0"],
    )
    assert "uncertain" not in res.stdout and " fake " in res.stdout


def test_rows_print_as_files_finish(capsys):
    table = _StreamTable(["a.jpg", "much/longer/name.png"])
    table.header("m", "abc", 0.5, (0.4, 0.6))
    head = capsys.readouterr().out
    assert "model m (sha256 abc), threshold 0.500, uncertain 0.400-0.600" in head
    assert "a.jpg" not in head
    table.row({"path": "a.jpg", "error": "file not found"})
    first = capsys.readouterr().out
    assert "a.jpg" in first and "error" in first and "file not found" in first
    d = {
        "path": "much/longer/name.png",
        "kind": "image",
        "label": "fake",
        "fake_probability": 0.91,
        "faces": [{}],
        "processing_time_s": 0.2,
    }
    table.row(d)
    second = capsys.readouterr().out
    assert "much/longer/name.png" in second and "0.910" in second and "a.jpg" not in second
    table.footer("never saw a diffusion face")
    tail = capsys.readouterr().out
    assert "2 files: 1 error, 1 fake" in tail and "limits: never saw a diffusion face" in tail


@pytest.mark.parametrize("flag", ["--csv", "--uncertain-band", "--threshold"])
def test_detect_help_names_the_new_flags(flag):
    res = runner.invoke(app, ["detect", "--help"], env={"COLUMNS": "200"})
    assert flag in res.stdout
