"""The results store: schema, one row per (path, model), replacement keeps ids, bad paths."""

from __future__ import annotations

import sqlite3

import pytest

from facetrust.errors import InputError
from facetrust.scan.store import FaceRow, FileRecord, FrameRow, ResultsStore


def _record(path: str, model: str = "m", sha: str = "abc", **kw) -> FileRecord:
    faces = kw.pop(
        "faces",
        [FaceRow(0, (1, 2, 3, 4), 0.9, 0.7, "fake", experts={"cnn": 0.6}, thumbnail=b"jpg")],
    )
    kw.setdefault("kind", "image")
    return FileRecord(
        path=path,
        model=model,
        model_sha256=sha,
        status="ok",
        sha256="h" + path,
        fake_probability=0.7,
        label="fake",
        faces=faces,
        **kw,
    )


def test_write_read_and_replace(tmp_path):
    db = tmp_path / "s.db"
    with ResultsStore(db) as store:
        scan = store.begin_scan(model="m", model_sha256="abc", args={"x": 1})
        (fid,) = store.write([_record("a.jpg", scan_id=scan)])
        assert store.state("a.jpg", "m", "abc").id == fid
        assert store.state("a.jpg", "other", "abc") is None
        # writing the same file again replaces its row and faces, keeping the id
        two = [FaceRow(i, (0, 0, 1, 1), 0.8, 0.1, "real") for i in range(2)]
        (fid2,) = store.write([_record("a.jpg", faces=two)])
        assert fid2 == fid
        assert store.counts() == {
            "ok": 1,
            "no_face": 0,
            "error": 0,
            "files": 1,
            "duplicates": 0,
            "faces": 2,
        }
        # another model: a separate row
        store.write([_record("a.jpg", model="m2", sha="def")])
        assert len(store.models()) == 2
        assert store.counts("m2", "def")["files"] == 1
        store.finish_scan(scan, {"ok": 1})
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT count(*) FROM files").fetchone()[0] == 2


def test_video_rows_and_duplicates(tmp_path):
    with ResultsStore(tmp_path / "s.db") as store:
        faces = [
            FaceRow(0, (0, 0, 5, 5), 0.9, 0.2, "real", frame_index=i, track_id=0) for i in (0, 3)
        ]
        frames = [FrameRow(i, i / 10, 0.2, "real", 1) for i in (0, 3)]
        rec = _record("v.mp4", kind="video", faces=faces, frames=frames)
        assert rec.n_faces == 1  # one track
        (vid,) = store.write([rec])
        assert store.original("hv.mp4", "m", "abc").id == vid
        dup = _record("copy.mp4", faces=[], duplicate_of=vid)
        store.write([dup])
        assert store.counts()["duplicates"] == 1
        # the same face twice in one frame is refused by the unique index: no doubled rows
        bad = _record("w.mp4", faces=[faces[0], faces[0]])
        with pytest.raises(sqlite3.IntegrityError):
            store.write([bad])
        assert store.state("w.mp4", "m", "abc") is None  # the whole file rolled back


@pytest.mark.parametrize("kind", ["dir", "nofolder", "notdb"])
def test_bad_store_path_is_one_line(tmp_path, kind):
    path = {
        "dir": tmp_path,
        "nofolder": tmp_path / "missing" / "s.db",
        "notdb": tmp_path / "x.db",
    }[kind]
    if kind == "notdb":
        path.write_bytes(b"not a database at all, just some text" * 100)
    with pytest.raises(InputError) as e:
        ResultsStore(path)
    assert "\n" not in str(e.value)
