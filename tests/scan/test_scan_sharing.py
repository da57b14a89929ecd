"""With a worker, the scanning process finds faces itself instead of waiting, and the rows are
the same as when one process does everything."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from facetrust.scan.scanner import Scanner
from facetrust.scan.store import ResultsStore


def _faces(db: Path) -> dict[str, list]:
    with ResultsStore(db) as store:
        rows = store.query(
            "SELECT f.path, f.status, f.fake_probability AS p, x0, y0, x1, y1 "
            "FROM files f LEFT JOIN faces ON faces.file_id = f.id ORDER BY f.path, face_index"
        )
    out: dict[str, list] = {}
    for r in rows:
        out.setdefault(Path(r["path"]).name, []).append(
            (
                r["status"],
                r["p"] if r["p"] is not None else -1.0,
                *(round(r[k] or -1, 3) for k in ("x0", "y0", "x1", "y1")),
            )
        )
    return out


def test_scanning_process_shares_face_finding_same_rows(tmp_path, astronaut, tiny_checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(24):  # distinct files (no duplicates), each with the face
        Image.fromarray(astronaut[i : 240 + i, 100 + i : 340 + i]).save(folder / f"{i:02d}.jpg")
    shared = Scanner(
        tmp_path / "a.db", model=tiny_checkpoint, workers=1, threads=2, batch_size=4,
        progress=False,
    ).run([folder])  # fmt: skip
    alone = Scanner(
        tmp_path / "b.db", model=tiny_checkpoint, workers=0, threads=1, batch_size=4,
        progress=False,
    ).run([folder])  # fmt: skip
    assert shared.ok == alone.ok == 24
    # the worker process starts in ~0.3 s or more; meanwhile the scanning process took files
    assert 1 <= shared.prepared_here <= 24 - 4
    assert alone.prepared_here == 24
    a, b = _faces(tmp_path / "a.db"), _faces(tmp_path / "b.db")
    assert a.keys() == b.keys() and len(a) == 24
    for name in a:  # the same faces and boxes; probabilities equal up to float noise
        # (batches made up differently, 2 threads against 1: ~1e-7 apart)
        assert [(s, *box) for s, _, *box in a[name]] == [(s, *box) for s, _, *box in b[name]]
        assert [p for _, p, *_ in a[name]] == pytest.approx([p for _, p, *_ in b[name]], abs=1e-5)
