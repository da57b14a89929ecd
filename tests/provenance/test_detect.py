"""Provenance in the detector's results: the CLI's JSON and table, the API's /v1/detect; the
pixel probability is unchanged by it."""

import json

import pytest
from typer.testing import CliRunner

from facetrust.cli import app
from facetrust.detect import Detector


@pytest.fixture(scope="module")
def detector(tiny_checkpoint):
    return Detector(tiny_checkpoint, device="cpu")


@pytest.mark.parametrize(
    ("name", "verdict", "strength"),
    [
        ("a1111", "ai_indicated", "metadata"),
        ("comfy", "ai_indicated", "metadata"),
        ("xmp", "ai_indicated", "metadata"),
        ("watermark", "ai_indicated", "embedded"),
        ("signed", "ai_indicated", "signed-untrusted"),
    ],
)
def test_detect_reports_provenance_beside_an_unchanged_pixel_score(
    detector, files, name, verdict, strength
):
    path = files["paths"][name]
    with_prov = detector(path)
    pixels_only = Detector(detector.model_path, device="cpu", provenance=False)(path)
    assert pixels_only.provenance is None and pixels_only.verdict is None
    assert with_prov.fake_probability == pixels_only.fake_probability
    assert with_prov.verdict.verdict == verdict
    assert strength in {e.strength for e in with_prov.provenance.evidence}
    d = with_prov.as_json()
    assert d["verdict"]["verdict"] == verdict and d["provenance"]["evidence"]


def test_plain_photo_and_raw_pixels(detector, files, rgb):
    plain = detector(files["paths"]["plain"])
    assert plain.provenance.evidence == [] and plain.verdict.verdict in ("real", "fake", "no_face")
    assert plain.verdict.verdict == plain.label  # absence of evidence changes nothing
    raw = detector(rgb).as_json()
    assert "provenance" not in raw and "verdict" not in raw  # nothing to read in raw pixels


def test_cli_detect_json_and_table_carry_provenance(tiny_checkpoint, files):
    runner = CliRunner()
    paths = [str(files["paths"][n]) for n in ("a1111", "plain")]
    res = runner.invoke(app, ["detect", *paths, "-m", str(tiny_checkpoint), "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.strip().splitlines()]
    assert (
        rows[0]["verdict"]["verdict"] == "ai_indicated" and rows[1]["provenance"]["evidence"] == []
    )
    table = runner.invoke(app, ["detect", *paths, "-m", str(tiny_checkpoint)])
    assert table.exit_code == 0 and "ai_indicated" in table.output and "none found" in table.output


def test_api_detect_carries_provenance(files, tiny_checkpoint, tmp_path):
    from fastapi.testclient import TestClient

    from facetrust.serve import ServeSettings, create_app

    settings = ServeSettings(
        model=str(tiny_checkpoint), device="cpu", job_dir=tmp_path / "jobs", log_level="warning"
    )
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        data = files["bytes"]["comfy"]
        r = client.post("/v1/detect", files={"file": ("c.png", data, "image/png")})
        assert r.status_code == 200, r.text
        assert r.json()["verdict"]["verdict"] == "ai_indicated"
