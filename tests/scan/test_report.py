"""``facetrust report``: the HTML page (counts, histogram, top suspects with thumbnails and
experts, errors, folders) in headless Chromium, escaping of hostile paths, the CSV, model choice
and one-line errors."""

from __future__ import annotations

import csv
import io
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facetrust.cli import app
from facetrust.errors import InputError
from facetrust.scan.report import load_report, render_html, write_csv
from facetrust.scan.store import FaceRow, FileRecord, FrameRow, ResultsStore

HOSTILE = '/data/b/<img src=x onerror="alert(1)">&<script>alert(2)</script>.jpg'
HOSTILE_ERROR = "cannot decode <script>document.title='pwned'</script> & more"
MODEL, SHA = "facetrust-default", "0123456789ab"


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((96, 96, 3), value, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _face(i: int, p: float, *, frame=None, track=None, clip: float | None = None) -> FaceRow:
    experts = None if clip is None else {"cnn": round(p - 0.05, 3), "clip": clip}
    label = "fake" if p >= 0.5 else "real"
    return FaceRow(i, (10, 10, 60, 60), 0.95, p, label, frame, track, experts, _jpeg(int(p * 250)))


def _ok(path: str, p: float, faces: list[FaceRow], **kw) -> FileRecord:
    kw.setdefault("kind", "image")
    return FileRecord(
        path=path,
        model=kw.pop("model", MODEL),
        model_sha256=kw.pop("sha", SHA),
        status="ok",
        sha256=kw.pop("content", "c" + path),
        fake_probability=p,
        label=kw.pop("label", "fake" if p >= 0.5 else "real"),
        threshold=0.5,
        seconds=0.2,
        faces=faces,
        **kw,
    )


@pytest.fixture
def store(tmp_path) -> Path:
    """A store with an older model's scan, then the default model's: real, fake, a hostile
    path, a duplicate, a no-face file, a video and two errors (one with a hostile message)."""
    db = tmp_path / "results.db"
    with ResultsStore(db) as s:
        old = s.begin_scan(model="facetrust-fast", model_sha256="fff000fff000")
        s.write(
            [
                _ok(
                    "/data/a/top.jpg",
                    0.2,
                    [_face(0, 0.2)],
                    model="facetrust-fast",
                    sha="fff000fff000",
                    scan_id=old,
                )
            ]
        )
        scan = s.begin_scan(model=MODEL, model_sha256=SHA)
        recs = [
            _ok("/data/a/real1.jpg", 0.08, [_face(0, 0.08, clip=0.1)]),
            _ok("/data/a/real2.jpg", 0.31, [_face(0, 0.31, clip=0.2)]),
            _ok("/data/a/top.jpg", 0.97, [_face(0, 0.97, clip=0.99), _face(1, 0.4, clip=0.3)]),
            _ok(HOSTILE, 0.88, [_face(0, 0.88, clip=0.9)]),
            FileRecord("/data/b/wall.png", MODEL, SHA, "no_face", kind="image", label="no_face"),
            FileRecord("/data/b/broken.jpg", MODEL, SHA, "error", error=HOSTILE_ERROR),
            FileRecord("=cmd|' /C calc'!A0", MODEL, SHA, "error", error="file not found"),
            _ok(
                "/data/v/clip.mp4",
                0.55,
                [_face(0, 0.5, frame=f, track=0, clip=0.6) for f in (0, 5, 10)],
                kind="video",
                label="uncertain",
                frames=[FrameRow(f, f / 10, 0.5, "uncertain", 1) for f in (0, 5, 10)],
            ),
        ]
        for r in recs:
            r.scan_id = scan
        ids = s.write(recs)
        top_id = ids[2]
        dup = _ok("/data/c/copy-of-top.jpg", 0.97, [], content="c/data/a/top.jpg")
        dup.duplicate_of, dup.n_faces_copied, dup.scan_id = top_id, 2, scan
        s.write([dup])
    return db


def test_load_report_counts_top_and_model_choice(store):
    r = load_report(store, top=3)
    assert (r.model.name, r.model.sha256) == (MODEL, SHA)  # the latest scan's model
    assert [m.name for m in r.other_models] == ["facetrust-fast"]
    assert r.files == 9 and r.by_status == {"ok": 6, "error": 2, "no_face": 1}
    assert r.by_label == {"real": 2, "fake": 3, "uncertain": 1, "no_face": 1}
    assert r.duplicates == 1 and r.faces == 2 + 1 + 1 + 1 + 3
    assert sum(sum(b.values()) for b in r.histogram) == 6
    assert r.histogram[19] == {"fake": 2} and r.histogram[1] == {"real": 1}
    # highest first; the duplicate is not listed again but named under its original
    assert [f.path for f in r.top] == ["/data/a/top.jpg", HOSTILE, "/data/v/clip.mp4"]
    assert r.top[0].copies == ["/data/c/copy-of-top.jpg"]
    assert [f.fake_probability for f in r.top[0].faces] == [0.97, 0.4]
    assert r.top[0].faces[0].experts == {"cnn": 0.92, "clip": 0.99}
    assert r.top[2].n_faces == 1 and r.top[2].n_face_rows == 3  # one track over 3 frames
    assert {f.path for f in r.errors} == {"/data/b/broken.jpg", "=cmd|' /C calc'!A0"}
    folders = {f.folder: f for f in r.folders}
    assert folders["/data/a"].files == 3 and folders["/data/a"].fake == 1
    assert folders["/data/a"].max_probability == 0.97
    assert r.folders[0].folder in ("/data/a", "/data/b", "/data/c")

    old = load_report(store, model="facetrust-fast")
    assert old.files == 1 and old.top[0].fake_probability == 0.2
    assert load_report(store, model="facetrust-fast@fff0").files == 1
    with pytest.raises(InputError, match="facetrust-default@0123456789ab, facetrust-fast@fff"):
        load_report(store, model="nope")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_hostile_path_and_error_are_escaped(store):
    page = render_html(load_report(store))
    assert HOSTILE not in page and HOSTILE_ERROR not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&lt;script&gt;" in page
    assert "cannot decode &lt;script&gt;document.title=" in page
    parser = _Tags()
    parser.feed(page)
    assert not [t for t, _ in parser.tags if t == "script"]
    imgs = [a for t, a in parser.tags if t == "img"]
    assert imgs and all(a["src"].startswith("data:image/jpeg;base64,") for a in imgs)
    assert not [a for _, a in parser.tags if any(k.startswith("on") for k in a)]


def test_report_cli_in_headless_chromium(chromium, store, tmp_path):
    """The page the CLI writes opens offline in Chromium: the top suspect first with its
    thumbnails and expert scores, the histogram drawn, the hostile path shown as text, no
    script run, no request beyond the file itself and nothing blocked by its CSP."""
    out, table = tmp_path / "report.html", tmp_path / "files.csv"
    res = CliRunner().invoke(app, ["report", str(store), "-o", str(out), "--csv", str(table)])
    assert res.exit_code == 0, res.output
    assert "9 files of model facetrust-default" in res.output and "9 rows" in res.output

    requests: list[str] = []
    messages: list[str] = []
    dialogs: list[str] = []
    page = chromium(viewport={"width": 1280, "height": 900})
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: messages.append(m.text))
    page.on("pageerror", lambda e: messages.append(str(e)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(out.as_uri())
    assert page.title() == "facetrust scan report: facetrust-default (0123456789ab)"
    first = page.locator("#suspects section[data-rank='1']")
    assert first.locator("h3 .path").inner_text() == "/data/a/top.jpg"
    assert "0.970" in first.inner_text() and "clip 0.99" in first.inner_text()
    assert "/data/c/copy-of-top.jpg" in first.inner_text()
    widths = first.locator("img").evaluate_all("els => els.map(e => e.naturalWidth)")
    assert widths == [96, 96]  # the data: URI thumbnails decode
    second = page.locator("#suspects section[data-rank='2'] h3 .path").inner_text()
    assert second == HOSTILE  # shown as text, not markup
    assert page.locator("#histogram rect.bar").count() == 5
    assert "pwned" not in page.title()
    assert HOSTILE_ERROR in page.locator("#errors").inner_text()
    assert page.locator("#counts [data-status='error'] b").inner_text() == "2"
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert not dialogs, dialogs
    assert not messages, messages  # no script error, nothing blocked by the CSP
    assert all(u.startswith(("file://", "data:")) for u in requests), requests

    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    assert len(rows) == 9
    by_path = {r["path"]: r for r in rows}
    assert by_path["/data/c/copy-of-top.jpg"]["duplicate_of"] == "/data/a/top.jpg"
    assert by_path["/data/c/copy-of-top.jpg"]["experts_max"] == '{"clip": 0.99, "cnn": 0.92}'
    assert by_path["/data/a/top.jpg"]["faces"] == "2"
    assert by_path["/data/b/broken.jpg"]["error"] == HOSTILE_ERROR
    assert "'=cmd|' /C calc'!A0" in by_path  # a formula-looking cell is quoted


def test_write_csv_other_model(store, tmp_path):
    assert write_csv(store, tmp_path / "fast.csv", model="facetrust-fast") == 1


def test_bad_stores_give_one_line(tmp_path):
    runner = CliRunner()
    text = tmp_path / "notes.db"
    text.write_text("not a database at all, just text " * 20)
    empty = tmp_path / "empty.db"
    ResultsStore(empty).close()
    cases = {
        tmp_path / "missing.db": "results store not found",
        text: "not a facetrust results store",
        empty: "holds no scanned files",
    }
    for path, message in cases.items():
        res = CliRunner().invoke(app, ["report", str(path), "-o", str(tmp_path / "r.html")])
        assert res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "r.html").exists()
    res = runner.invoke(
        app, ["report", str(empty.with_name("x.db")), "-o", "r.html", "--top", "-1"]
    )
    assert res.exit_code == 2
