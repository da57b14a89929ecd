"""``facetrust scan`` as a user runs it: a real process killed with SIGKILL mid-scan and run
again loses no file and writes none twice; the summary; one-line errors."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

N_FILES = 30


def _scan_cmd(src: Path, db: Path, model: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "facetrust", "scan", str(src), "--out", str(db),
        "--model", str(model), "--threads", "2", "--workers", "1", "--frames", "2", *extra,
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "FACETRUST_THREADS": "2"}


def _files_rows(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT count(*) FROM files").fetchone()[0]
    except sqlite3.Error:
        return 0  # not created yet


@pytest.fixture(scope="module")
def many(tmp_path_factory, astronaut) -> Path:
    """30 small images, each different: a face, shifted and brightened a little per file; and
    two copies of the first (duplicates)."""
    root = tmp_path_factory.mktemp("many")
    for i in range(N_FILES):
        crop = astronaut[10 + i : 330 + i, 80:400].astype(np.int16) + (i % 7)
        Image.fromarray(crop.clip(0, 255).astype(np.uint8)).resize((224, 224)).save(
            root / f"img_{i:02d}.png"
        )
    for k in range(2):
        (root / f"zz_copy_{k}.png").write_bytes((root / "img_00.png").read_bytes())
    return root


def test_sigkill_mid_scan_then_rerun_loses_and_doubles_nothing(tmp_path, many, tiny_checkpoint):
    db = tmp_path / "s.db"
    total = N_FILES + 2
    proc = subprocess.Popen(
        _scan_cmd(many, db, tiny_checkpoint, "--batch-size", "1"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the kill takes the workers too
    )
    try:
        deadline = time.monotonic() + 120
        while _files_rows(db) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no row committed in 120 s"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stderr.close()
    partial = _files_rows(db)
    assert 3 <= partial < total  # killed mid-scan, after some rows were committed

    rerun = subprocess.run(
        _scan_cmd(many, db, tiny_checkpoint, "--batch-size", "4"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{partial} already done" in rerun.stdout

    con = sqlite3.connect(db)
    paths = [r[0] for r in con.execute("SELECT path FROM files")]
    assert len(paths) == len(set(paths)) == total  # every file exactly once
    assert {Path(p).name for p in paths} == {p.name for p in many.iterdir()}
    statuses = dict(con.execute("SELECT status, count(*) FROM files GROUP BY status"))
    assert statuses == {"ok": total}
    assert con.execute("SELECT count(*) FROM files WHERE duplicate_of IS NOT NULL").fetchone()[0]
    # faces: exactly the faces each file says it has, none twice
    per_file = con.execute(
        "SELECT f.n_faces, count(x.id), count(DISTINCT x.face_index) FROM files f "
        "LEFT JOIN faces x ON x.file_id = f.id WHERE f.duplicate_of IS NULL GROUP BY f.id"
    ).fetchall()
    assert all(n == c == d for n, c, d in per_file) and all(n >= 1 for n, _, _ in per_file)
    # two runs recorded, the first never finished
    finished = [r[0] for r in con.execute("SELECT finished_at FROM scans ORDER BY id")]
    assert finished[0] is None and finished[1] is not None


def test_cli_summary_and_one_line_errors(tmp_path, many, tiny_checkpoint):
    from typer.testing import CliRunner

    from facetrust.cli import app

    runner = CliRunner()
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes((many / "img_00.png").read_bytes())
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"x" * 50)
    db = tmp_path / "s.db"
    args = [
        "--model",
        str(tiny_checkpoint),
        "--threads",
        "1",
        "--workers",
        "0",
        "--runtime",
        "torch",
    ]
    done = runner.invoke(app, ["scan", str(src), "--out", str(db), *args])
    assert done.exit_code == 0, done.output
    assert "recorded 1 ok, 0 no_face, 1 error" in done.stdout
    assert "files/s" in done.stdout and "faces/s" in done.stdout

    empty = tmp_path / "empty"
    empty.mkdir()
    for argv in (
        ["scan", str(src), "--out", str(tmp_path / "missing" / "s.db"), *args],
        ["scan", str(empty), "--out", str(db), *args],
        ["scan", str(tmp_path / "nope"), "--out", str(db), *args],
    ):
        r = runner.invoke(app, argv)
        assert r.exit_code == 2
        assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
