"""``facetrust scan-export``: the store's tables to Parquet (round trip, typed columns) and CSV,
one model or all, and one-line errors."""

from __future__ import annotations

import csv

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from facetrust.cli import app
from facetrust.errors import InputError
from facetrust.scan.export import export_store, output_paths
from facetrust.scan.store import FaceRow, FileRecord, FrameRow, ResultsStore


@pytest.fixture
def store(tmp_path):
    db = tmp_path / "s.db"
    with ResultsStore(db) as s:
        a = s.begin_scan(model="m", model_sha256="aaa", args={"sources": ["x"]})
        faces = [
            FaceRow(
                0,
                (1.5, 2, 30, 40),
                0.9,
                0.8,
                "fake",
                experts={"cnn": 0.7, "clip": 0.85},
                thumbnail=b"\xff\xd8\xffthumb",
            ),
            FaceRow(1, (50, 2, 80, 40), 0.7, 0.2, "real", experts={"cnn": 0.1, "clip": 0.3}),
        ]
        video_faces = [
            FaceRow(0, (0, 0, 9, 9), 0.8, 0.6, "fake", frame_index=f, track_id=0) for f in (0, 3)
        ]
        s.write(
            [
                FileRecord(
                    "/d/x.jpg",
                    "m",
                    "aaa",
                    "ok",
                    size=10,
                    mtime=1.25,
                    sha256="h1",
                    kind="image",
                    fake_probability=0.8,
                    label="fake",
                    threshold=0.5,
                    faces=faces,
                    scan_id=a,
                ),
                FileRecord(
                    "/d/v.mp4",
                    "m",
                    "aaa",
                    "ok",
                    kind="video",
                    fake_probability=0.6,
                    label="fake",
                    faces=video_faces,
                    scan_id=a,
                    frames=[FrameRow(0, 0.0, 0.6, "fake", 1), FrameRow(3, 0.3, 0.6, "fake", 1)],
                ),
                FileRecord(
                    '/d/bad,"quoted"\n.jpg', "m", "aaa", "error", error="no decoder", scan_id=a
                ),
            ]
        )
        b = s.begin_scan(model="other", model_sha256="bbb")
        s.write([FileRecord("/d/x.jpg", "other", "bbb", "no_face", label="no_face", scan_id=b)])
    return db


def test_parquet_round_trip(store, tmp_path):
    out = tmp_path / "out.parquet"
    done = {t.table: t for t in export_store(store, out)}
    assert {k: v.rows for k, v in done.items()} == {"files": 4, "faces": 4, "frames": 2, "scans": 2}
    assert done["faces"].path == tmp_path / "out.faces.parquet"
    files = pq.read_table(out).to_pylist()
    with ResultsStore(store) as s:
        rows = s.query("SELECT * FROM files ORDER BY id")
    assert files == rows  # every column, every value, types kept (mtime float, ids int)
    faces = pq.read_table(done["faces"].path)
    assert faces.schema.field("experts").type == pa.map_(pa.string(), pa.float64())
    first = faces.to_pylist()[0]
    assert first["experts"] == [("cnn", 0.7), ("clip", 0.85)]
    assert (first["x0"], first["y1"], first["thumbnail"]) == (1.5, 40.0, b"\xff\xd8\xffthumb")
    assert faces.column("frame_index").to_pylist() == [None, None, 0, 3]
    frames = pq.read_table(done["frames"].path).to_pylist()
    assert [f["time_s"] for f in frames] == [0.0, 0.3]

    one = {t.table: t.rows for t in export_store(store, tmp_path / "m.parquet", model="m@aa")}
    assert one == {"files": 3, "faces": 4, "frames": 2, "scans": 1}


def test_csv_and_cli(store, tmp_path):
    out = tmp_path / "out.csv"
    res = CliRunner().invoke(app, ["scan-export", str(store), "-o", str(out), "--model", "m"])
    assert res.exit_code == 0, res.output
    assert f"{out}: 3 files rows" in res.output
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert [r["path"] for r in rows] == ["/d/x.jpg", "/d/v.mp4", '/d/bad,"quoted"\n.jpg']
    faces = list(csv.DictReader((tmp_path / "out.faces.csv").open(encoding="utf-8")))
    assert "thumbnail" not in faces[0] and faces[0]["experts"] == '{"cnn": 0.7, "clip": 0.85}'


def test_formats_and_errors(store, tmp_path):
    assert output_paths(tmp_path / "a.parquet")["faces"] == tmp_path / "a.faces.parquet"
    assert output_paths(tmp_path / "a", "csv")["frames"] == tmp_path / "a.frames.csv"
    with pytest.raises(InputError, match="name it .parquet or .csv"):
        export_store(store, tmp_path / "a.xlsx")
    with pytest.raises(InputError, match="unknown export format"):
        export_store(store, tmp_path / "a.xlsx", fmt="xlsx")
    with pytest.raises(InputError, match="no files scanned with model 'nope'"):
        export_store(store, tmp_path / "a.parquet", model="nope")
    res = CliRunner().invoke(
        app, ["scan-export", str(tmp_path / "none.db"), "-o", str(tmp_path / "a.parquet")]
    )
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"error: results store not found: {tmp_path / 'none.db'}"
    ]
    assert not list(tmp_path.glob("a*"))
