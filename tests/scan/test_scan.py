"""``Scanner``: statuses, one row per file, reruns, duplicates, manifests, stdin, model change,
and the same verdicts as the ``Detector``."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facetrust.detect import Detector
from facetrust.errors import InputError
from facetrust.scan.scanner import Scanner
from facetrust.scan.store import ResultsStore


@pytest.fixture(scope="module")
def tree(tmp_path_factory, astronaut, face_video, noface_video) -> Path:
    """good.jpg (a face), copy.jpg (the same bytes), bad.jpg (corrupt), plain.png (no face),
    sub/face.mp4 (a face in every frame), sub/noface.avi."""
    root = tmp_path_factory.mktemp("tree")
    Image.fromarray(astronaut[:320, 60:380]).save(root / "good.jpg", quality=90)
    shutil.copy(root / "good.jpg", root / "copy.jpg")
    (root / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 300)
    Image.fromarray(np.full((80, 80, 3), 128, np.uint8)).save(root / "plain.png")
    (root / "sub").mkdir()
    shutil.copy(face_video, root / "sub" / "face.mp4")
    shutil.copy(noface_video, root / "sub" / "noface.avi")
    return root


def _rows(db: Path) -> dict[str, dict]:
    with ResultsStore(db) as store:
        return {Path(r["path"]).name: r for r in store.iter_files()}


def _scanner(db, model, **kw) -> Scanner:
    kw.setdefault("workers", 0)
    kw.setdefault("threads", 1)
    return Scanner(db, model=model, frames=4, progress=False, **kw)


def test_folder_statuses_one_row_each_and_rerun_adds_nothing(tmp_path, tree, tiny_checkpoint):
    db = tmp_path / "s.db"
    scanner = _scanner(db, tiny_checkpoint)
    first = scanner.run([tree])
    rows = _rows(db)
    assert sorted(rows) == [
        "bad.jpg",
        "copy.jpg",
        "face.mp4",
        "good.jpg",
        "noface.avi",
        "plain.png",
    ]
    assert rows["copy.jpg"]["status"] == "ok" and rows["copy.jpg"]["n_faces"] == 1
    assert rows["copy.jpg"]["kind"] == "image" and len(rows["copy.jpg"]["sha256"]) == 64
    assert rows["good.jpg"]["status"] == "ok" and rows["good.jpg"]["n_faces"] == 1
    # copy.jpg comes first in the walk: it is scored, good.jpg (same bytes) copies it
    assert rows["good.jpg"]["duplicate_of"] == rows["copy.jpg"]["id"]
    assert rows["copy.jpg"]["duplicate_of"] is None
    assert rows["good.jpg"]["fake_probability"] == rows["copy.jpg"]["fake_probability"]
    assert rows["bad.jpg"]["status"] == "error" and "\n" not in rows["bad.jpg"]["error"]
    assert rows["bad.jpg"]["fake_probability"] is None
    for name in ("plain.png", "noface.avi"):
        assert rows[name]["status"] == "no_face" and rows[name]["fake_probability"] is None
    assert rows["face.mp4"]["status"] == "ok" and rows["face.mp4"]["kind"] == "video"
    assert (first.ok, first.no_face, first.error, first.duplicates) == (3, 2, 1, 1)

    with ResultsStore(db) as store:
        faces = store.query("SELECT * FROM faces ORDER BY file_id, frame_index, face_index")
        frames = store.query("SELECT * FROM frames WHERE file_id = ?", (rows["face.mp4"]["id"],))
    image_faces = [f for f in faces if f["file_id"] == rows["copy.jpg"]["id"]]
    assert len(image_faces) == 1 and image_faces[0]["frame_index"] is None
    assert image_faces[0]["thumbnail"][:3] == b"\xff\xd8\xff"  # a JPEG
    assert not [f for f in faces if f["file_id"] == rows["good.jpg"]["id"]]  # via the original
    assert len(frames) == 4 and all(f["n_faces"] == 1 for f in frames)
    video_faces = [f for f in faces if f["file_id"] == rows["face.mp4"]["id"]]
    assert len(video_faces) == 4 and {f["track_id"] for f in video_faces} == {0}

    again = scanner.run([tree])
    assert again.recorded == 0 and again.skipped == 6 and again.faces == 0
    assert _rows(db) == rows  # nothing added, nothing rewritten


def test_scan_gives_the_detectors_verdicts(tmp_path, tree, tiny_checkpoint):
    db = tmp_path / "s.db"
    _scanner(db, tiny_checkpoint, workers=1, threads=2).run([tree / "good.jpg", tree / "sub"])
    rows = _rows(db)
    det = Detector(tiny_checkpoint, frames=4, provenance=False)
    for name, path in (("good.jpg", tree / "good.jpg"), ("face.mp4", tree / "sub" / "face.mp4")):
        want = det(path)
        assert rows[name]["fake_probability"] == pytest.approx(want.fake_probability, abs=1e-6)
        assert rows[name]["label"] == want.label
        assert rows[name]["model"] == want.model and rows[name]["model_sha256"] == want.model_sha256


def test_retry_errors_rescans_only_when_asked(tmp_path, tree, tiny_checkpoint, astronaut):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(tree / "bad.jpg", src / "x.jpg")
    db = tmp_path / "s.db"
    scanner = _scanner(db, tiny_checkpoint)
    scanner.run([src])
    first = _rows(db)["x.jpg"]
    assert first["status"] == "error"
    Image.fromarray(astronaut).save(src / "x.jpg")  # the file is fixed
    assert scanner.run([src]).skipped == 1  # errors are not retried by default
    assert _rows(db)["x.jpg"]["status"] == "error"
    _scanner(db, tiny_checkpoint, retry_errors=True).run([src])
    fixed = _rows(db)["x.jpg"]
    assert fixed["status"] == "ok" and fixed["id"] == first["id"]


def test_manifests_and_stdin(tmp_path, tree, tiny_checkpoint):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "m.jsonl").write_text(
        json.dumps({"path": os.path.relpath(tree / "good.jpg", lists), "label": "real"})
        + "\n"
        + json.dumps({"path": str(tree / "plain.png")})
        + "\n"
    )
    (lists / "m.csv").write_text(f"label,path\nx,{tree / 'bad.jpg'}\n")
    db = tmp_path / "s.db"
    scanner = _scanner(db, tiny_checkpoint)
    scanner.run([lists / "m.jsonl", lists / "m.csv"])
    assert sorted(_rows(db)) == ["bad.jpg", "good.jpg", "plain.png"]
    summary = scanner.run(["-"], stdin=io.StringIO(f"{tree / 'copy.jpg'}\n\n{tree / 'good.jpg'}\n"))
    rows = _rows(db)
    assert summary.duplicates == 1 and summary.skipped == 1
    assert rows["copy.jpg"]["duplicate_of"] == rows["good.jpg"]["id"]
    bad = lists / "broken.jsonl"
    bad.write_text('{"file": "x.jpg"}\n')
    with pytest.raises(InputError, match="path"):
        scanner.run([bad])


def test_model_change_gives_separate_rows(tmp_path, tree, tiny_checkpoint):
    from facetrust.models import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(tiny_checkpoint)
    other = save_checkpoint(
        tmp_path / "other.safetensors", model, meta.model_copy(update={"name": "tiny-other"})
    )
    db = tmp_path / "s.db"
    _scanner(db, tiny_checkpoint).run([tree / "good.jpg"])
    second = _scanner(db, other).run([tree / "good.jpg"])
    assert second.ok == 1 and second.skipped == 0
    with ResultsStore(db) as store:
        rows = store.query("SELECT model, model_sha256 FROM files")
        assert {r["model"] for r in rows} == {"tiny-test", "tiny-other"}
        assert len({r["model_sha256"] for r in rows}) == 2
        assert len(store.query("SELECT * FROM scans")) == 2


def test_bad_inputs_are_one_line_errors(tmp_path, tiny_checkpoint):
    with pytest.raises(InputError, match="folder does not exist"):
        Scanner(tmp_path / "nope" / "s.db", model=tiny_checkpoint)
    scanner = _scanner(tmp_path / "s.db", tiny_checkpoint)
    with pytest.raises(InputError, match="not found"):
        scanner.run([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image or video"):
        scanner.run([tmp_path / "empty"])
    with pytest.raises(InputError, match="no inputs"):
        scanner.run([])


def test_never_more_threads_than_asked(tmp_path, tiny_checkpoint):
    one = Scanner(tmp_path / "s.db", model=tiny_checkpoint, threads=1, workers=3)
    assert (one.workers, one.model_threads) == (0, 1)
    two = Scanner(tmp_path / "s.db", model=tiny_checkpoint, threads=2, workers=5)
    assert (two.workers, two.model_threads) == (1, 1)
    four = Scanner(tmp_path / "s.db", model=tiny_checkpoint, threads=4)
    assert (four.workers, four.model_threads) == (2, 2)
    many = Scanner(tmp_path / "s.db", model=tiny_checkpoint, threads=4, workers=3)
    assert (many.workers, many.model_threads) == (3, 1)


def test_a_model_with_a_clip_expert_gets_most_threads(tmp_path, tiny_checkpoint, monkeypatch):
    """The default split follows what each stage costs: finding faces is ~1/16 of the work
    of a fused model with CLIP, half of a CNN's. Read from the checkpoint header only."""
    import facetrust.scan.scanner as sc

    assert sc._reads_clip(None, sc.Settings())  # the shipped default fuses CLIP
    assert sc._reads_clip("facetrust-default", sc.Settings())
    assert not sc._reads_clip("facetrust-fast", sc.Settings())
    assert not sc._reads_clip(tiny_checkpoint, sc.Settings())
    assert not sc._reads_clip(tmp_path / "missing.safetensors", sc.Settings())

    class NoLoad:  # the thread split is decided before the model loads; skip loading CLIP
        def __init__(self, *a, settings=None, **k):
            self.detector = type("D", (), {"frames": 1, "runtime": "torch"})()
            self.name, self.threads = "stub", settings.threads

    monkeypatch.setattr(sc, "ScanModel", NoLoad)
    two = Scanner(tmp_path / "s.db", model="facetrust-default", threads=2)
    assert (two.workers, two.model_threads, two.model.threads) == (0, 2, 2)
    many = Scanner(tmp_path / "s.db", model="facetrust-default", threads=16)
    assert (many.workers, many.model_threads) == (2, 14)
    fast = Scanner(tmp_path / "s.db", model="facetrust-fast", threads=2)
    assert (fast.workers, fast.model_threads) == (1, 1)
