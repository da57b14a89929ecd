"""`facetrust provenance` and POST /v1/provenance on the same fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from facetrust.cli import app as cli_app

runner = CliRunner()

EXPECTED = {  # file -> (kind, strength) of its one evidence item, or None for none
    "a1111": ("metadata", "metadata"),
    "comfy": ("metadata", "metadata"),
    "xmp": ("metadata", "metadata"),
    "watermark": ("watermark", "embedded"),
    "signed": ("c2pa", "signed-untrusted"),
    "tampered": ("c2pa", "signed-invalid"),
    "stripped": None,
    "plain": None,
}


def evidence_of(d: dict):
    items = [(e["kind"], e["strength"]) for e in d["evidence"]]
    assert len(items) <= 1, items
    return items[0] if items else None


def test_cli_json_lines(files):
    paths = [str(files["paths"][n]) for n in EXPECTED]
    res = runner.invoke(cli_app, ["provenance", "--json", *paths])
    assert res.exit_code == 0, res.output
    rows = {Path(r["path"]).stem: r for r in map(json.loads, res.stdout.splitlines())}
    assert {n: evidence_of(rows[n]) for n in EXPECTED} == EXPECTED
    assert rows["signed"]["verdict"]["verdict"] == "ai_indicated"
    assert rows["plain"]["verdict"]["verdict"] == "unknown"
    assert rows["comfy"]["evidence"][0]["raw"]["prompt"] == "a photo of an astronaut"


def test_cli_trust_anchors_and_table(files, chain, tmp_path):
    pem = tmp_path / "root.pem"
    pem.write_text(chain[2])
    signed = str(files["paths"]["signed"])
    res = runner.invoke(cli_app, ["provenance", "--json", "--trust-anchors", str(pem), signed])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert row["evidence"][0]["strength"] == "signed-valid"
    assert row["verdict"]["verdict"] == "ai_declared"
    table = runner.invoke(cli_app, ["provenance", signed, str(files["paths"]["tampered"])])
    assert table.exit_code == 0
    assert "UNTRUSTED" in table.stdout and "INVALID" in table.stdout  # words, the table wraps


def test_cli_exit_codes(files, tmp_path):
    folder = files["dir"]  # holds garbage.jpg: that file fails, the others are read
    res = runner.invoke(cli_app, ["provenance", "--json", str(folder)])
    assert res.exit_code == 1
    rows = {Path(r["path"]).stem: r for r in map(json.loads, res.stdout.splitlines())}
    assert "not a supported image or video" in rows["garbage"]["error"]
    assert evidence_of(rows["watermark"]) == ("watermark", "embedded")
    (tmp_path / "empty").mkdir()
    assert runner.invoke(cli_app, ["provenance", str(tmp_path / "empty")]).exit_code == 2
    bad_pem = tmp_path / "bad.pem"
    bad_pem.write_text("not a certificate")
    res = runner.invoke(
        cli_app, ["provenance", "--trust-anchors", str(bad_pem), str(files["paths"]["plain"])]
    )
    assert res.exit_code == 2 and "no PEM certificate" in res.output


def make_client(tmp: Path, **overrides) -> TestClient:
    from facetrust.serve import ServeSettings, create_app

    settings = ServeSettings(
        model=str(tmp / "no-model.safetensors"),  # provenance needs no model
        device="cpu",
        job_dir=tmp / "jobs",
        log_level="warning",
        **overrides,
    )
    return TestClient(create_app(settings), base_url="http://localhost")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with make_client(tmp_path_factory.mktemp("serve")) as c:
        yield c


def test_api_provenance(client, files):
    for name, expected in EXPECTED.items():
        data = files["bytes"][name]
        r = client.post("/v1/provenance", files={"file": (f"{name}.bin", data)})
        assert r.status_code == 200, r.text
        body = r.json()
        assert evidence_of(body) == expected, name
        assert body["checked"][:2] == ["c2pa", "metadata"]
    r = client.post("/v1/provenance", files={"file": ("s.jpg", files["bytes"]["signed"])})
    assert r.json()["verdict"]["verdict"] == "ai_indicated"


def test_api_provenance_bad_input(client):
    assert client.post("/v1/provenance", files={"file": ("x.jpg", b"")}).status_code == 400
    r = client.post("/v1/provenance", files={"file": ("x.jpg", b"not an image at all")})
    assert r.status_code == 415
    assert client.post("/v1/provenance", content=b"raw").status_code == 415


def test_api_provenance_is_in_the_openapi_document(client):
    doc = client.get("/openapi.json").json()
    op = doc["paths"]["/v1/provenance"]["post"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ProvenanceReport"
    )


def test_api_decodes_pixels_only_up_to_the_analysis_limit(tmp_path, files):
    with make_client(tmp_path, analysis_max_pixels=100_000) as c:
        r = c.post("/v1/provenance", files={"file": ("w.png", files["bytes"]["watermark"])})
    assert r.status_code == 200
    body = r.json()
    assert body["evidence"] == [] and "watermark" not in body["checked"]
    assert (
        "watermark: the image is 512x512, above the 0.1 MP the check runs on; not checked"
        in (body["notes"])
    )
