"""The Ray engine (``--engine ray``): the same rows as the local engine on the same folder, on a
local Ray instance of 2 CPUs started once for the module; resume and retry like the local
engine; a missing ``scale`` extra is one line."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facetrust.cli import app
from facetrust.errors import MissingExtraError
from facetrust.scan.export import export_store
from facetrust.scan.ray_engine import RayScanner, ray_session, remove_stale_sessions
from facetrust.scan.report import load_report
from facetrust.scan.scanner import Scanner
from facetrust.scan.store import ResultsStore


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray (2 CPUs) for the whole module: its start-up takes seconds."""
    with ray_session(None, cpus=2) as ray:
        assert ray.cluster_resources()["CPU"] == 2
        yield ray
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def tree(tmp_path_factory, astronaut, face_video, noface_video) -> Path:
    """Two face photos, a copy of one, a corrupt JPEG, a photo without a face, a video with a
    face and one without."""
    root = tmp_path_factory.mktemp("raytree")
    Image.fromarray(astronaut[:320, 60:380]).save(root / "good.jpg", quality=90)
    Image.fromarray(astronaut[:320, 60:380][:, ::-1]).save(root / "mirror.png")
    shutil.copy(root / "good.jpg", root / "copy.jpg")
    (root / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 300)
    Image.fromarray(np.full((80, 80, 3), 128, np.uint8)).save(root / "plain.png")
    (root / "sub").mkdir()
    shutil.copy(face_video, root / "sub" / "face.mp4")
    shutil.copy(noface_video, root / "sub" / "noface.avi")
    return root


def _dump(db: Path) -> dict[str, dict]:
    """path -> its files row (ids replaced by paths), faces and frames."""
    with ResultsStore(db) as store:
        files = {r["id"]: r for r in store.iter_files()}
        faces = store.query("SELECT * FROM faces ORDER BY file_id, frame_index, face_index")
        frames = store.query("SELECT * FROM frames ORDER BY file_id, frame_index")
    out = {}
    for fid, r in files.items():
        row = {k: r[k] for k in ("status", "kind", "label", "n_faces", "width", "height")}
        row.update(sha256=r["sha256"], error=r["error"], threshold=r["threshold"])
        row["duplicate_of"] = files[r["duplicate_of"]]["path"] if r["duplicate_of"] else None
        row["p"] = r["fake_probability"]
        row["faces"] = [
            {k: v for k, v in f.items() if k not in ("id", "file_id")}
            for f in faces
            if f["file_id"] == fid
        ]
        row["frames"] = [
            {k: v for k, v in f.items() if k != "file_id"} for f in frames if f["file_id"] == fid
        ]
        out[r["path"]] = row
    return out


def _same(a: dict, b: dict) -> None:
    a, b = copy.deepcopy(a), copy.deepcopy(b)
    assert sorted(a) == sorted(b)
    for path in a:
        x, y = dict(a[path]), dict(b[path])
        px, py = x.pop("p"), y.pop("p")
        assert (px is None) == (py is None) and (px is None or abs(px - py) < 1e-5), path
        fx, fy = x.pop("faces"), y.pop("faces")
        assert len(fx) == len(fy), path
        for f, g in zip(fx, fy, strict=True):
            assert abs(f.pop("fake_probability") - g.pop("fake_probability")) < 1e-5, path
            assert f == g, path  # boxes, detector scores, labels, tracks, thumbnails
        gx, gy = x.pop("frames"), y.pop("frames")
        assert [(f["frame_index"], f["n_faces"], f["label"]) for f in gx] == [
            (f["frame_index"], f["n_faces"], f["label"]) for f in gy
        ], path
        assert x == y, path


def test_ray_gives_the_local_rows_and_resumes(ray_local, tree, tmp_path, tiny_checkpoint):
    local_db, ray_db = tmp_path / "local.db", tmp_path / "ray.db"
    Scanner(local_db, model=tiny_checkpoint, workers=0, threads=1, frames=4, progress=False).run(
        [tree]
    )
    scanner = RayScanner(ray_db, model=tiny_checkpoint, workers=2, frames=4, progress=False)
    first = scanner.run([tree])
    assert (first.ok, first.no_face, first.error, first.duplicates) == (4, 2, 1, 1)
    assert first.faces > 0 and not first.interrupted
    local, ray = _dump(local_db), _dump(ray_db)
    _same(local, ray)
    assert {r["status"] for r in ray.values()} == {"ok", "no_face", "error"}
    assert sum(len(r["faces"]) for r in ray.values()) == first.faces
    with ResultsStore(ray_db) as store:
        (scan,) = store.query("SELECT engine, args FROM scans")
    assert scan["engine"] == "ray" and json.loads(scan["args"])["ray_cpus"] == 2

    # the report and the export read a real scan's store
    rep = load_report(ray_db, top=2)
    best = max(
        (r["p"], path) for path, r in ray.items() if r["p"] is not None and not r["duplicate_of"]
    )
    assert (rep.top[0].fake_probability, rep.top[0].path) == best
    assert rep.top[0].faces[0].thumbnail[:3] == b"\xff\xd8\xff"
    assert rep.by_status == {"ok": 4, "no_face": 2, "error": 1}
    tables = {t.table: t.rows for t in export_store(ray_db, tmp_path / "x.parquet")}
    assert tables == {"files": 7, "faces": first.faces, "frames": 8, "scans": 1}

    # a rerun skips everything and writes nothing; --retry-errors scans the error again
    again = scanner.run([tree])
    assert again.skipped == 7 and again.recorded == 0
    assert _dump(ray_db) == ray
    retry = RayScanner(
        ray_db, model=tiny_checkpoint, workers=2, frames=4, progress=False, retry_errors=True
    ).run([tree])
    assert (retry.error, retry.skipped) == (1, 6)
    _same(_dump(ray_db), local)


def test_missing_scale_extra_is_one_line(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    with pytest.raises(MissingExtraError) as err:
        RayScanner(tmp_path / "s.db", model="facetrust-fast")
    assert str(err.value) == (
        "the Ray engine needs the 'scale' extra (ray not installed): pip install 'facetrust[scale]'"
    )
    assert not (tmp_path / "s.db").exists()  # nothing was created before the check
    res = CliRunner().invoke(
        app, ["scan", str(tmp_path), "--out", str(tmp_path / "s.db"), "--engine", "ray"]
    )
    assert res.exit_code == 2
    assert res.output.splitlines() == [f"error: {err.value}"]


def test_stale_local_ray_folders_are_removed(tmp_path):
    import subprocess
    import sys

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = tmp_path / f"facetrust-ray-{int(gone.stdout)}-abc"
    alive = tmp_path / f"facetrust-ray-{os.getpid()}-def"
    other = tmp_path / "facetrust-ray-x-y"
    for d in (dead, alive, other):
        (d / "session").mkdir(parents=True)
    assert remove_stale_sessions(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and other.exists()


@pytest.mark.parametrize(("cpus", "actors"), [(1, 1), (2, 1), (2, 2), (3, 2), (8, 3)])
def test_local_resources_always_fit(cpus, actors):
    """A local Ray always has room for every scoring actor and one decoding task."""
    scanner = object.__new__(RayScanner)  # resources() reads only these three
    scanner.address, scanner.cpus, scanner.score_actors = None, cpus, actors
    task, actor = scanner.resources()
    assert 0 < task <= 1 and 0 < actor <= 1
    assert round(actors * actor * 1e4) + round(task * 1e4) <= cpus * 1e4
