"""A scan's results as a self-contained HTML page and a CSV: what ``facetrust report`` writes.

:func:`load_report` reads a results store (read-only) into a :class:`ScanReport`: counts by
status and label, a histogram of file probabilities, the most suspicious files with their face
thumbnails and per-expert probabilities, the errors, and a summary per folder.
:func:`render_html` turns it into one HTML file that needs no network: inline CSS, an inline SVG
histogram, thumbnails as ``data:`` URIs, no script, and a Content-Security-Policy that forbids
every fetch. Every path and error message is HTML-escaped (file names are hostile input).
:func:`write_csv` writes one row per file.

A store can hold scans by several models (each kept apart by model name and checkpoint hash);
a report covers one: the one named, else the model of the latest scan.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from facetrust.errors import InputError
from facetrust.files import atomic_write
from facetrust.scan.store import SCHEMA_VERSION

__all__ = [
    "FaceEntry",
    "FileEntry",
    "FolderSummary",
    "ModelChoice",
    "ScanReport",
    "load_report",
    "open_store",
    "render_html",
    "write_csv",
    "write_html",
]

HIST_BINS = 20
MAX_ERRORS = 500
MAX_FOLDERS = 300
FACES_PER_FILE = 8


# -- reading the store ----------------------------------------------------------------------


def open_store(path: str | os.PathLike) -> sqlite3.Connection:
    """The results store at ``path``, opened read-only; a missing file or one that is not a
    facetrust results store raises ``InputError`` with one line."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"results store not found: {p}")
    try:
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise InputError(f"not a facetrust results store: {p} ({exc})") from None
    if not {"scans", "files", "faces", "frames"} <= tables:
        conn.close()
        raise InputError(f"not a facetrust results store (no scans/files/faces tables): {p}")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        conn.close()
        raise InputError(
            f"results store {p} has schema {version}; this facetrust reads up to "
            f"{SCHEMA_VERSION} (upgrade facetrust)"
        )
    conn.row_factory = sqlite3.Row
    return conn


@dataclass(frozen=True)
class ModelChoice:
    """The model a report covers: its name and checkpoint hash (``None`` when not recorded)."""

    name: str
    sha256: str | None

    def describe(self) -> str:
        return self.name if not self.sha256 else f"{self.name} ({self.sha256[:12]})"


def _models(conn: sqlite3.Connection) -> list[tuple[str, str | None, int]]:
    """(model, model_sha256, files) in the store, latest scan first."""
    rows = conn.execute(
        "SELECT f.model AS model, f.model_sha256 AS sha, COUNT(*) AS n, "
        "  (SELECT MAX(s.id) FROM scans s WHERE s.model = f.model "
        "     AND s.model_sha256 IS f.model_sha256) AS last "
        "FROM files f WHERE f.model IS NOT NULL GROUP BY f.model, f.model_sha256 "
        "ORDER BY last IS NULL, last DESC, n DESC"
    ).fetchall()
    return [(r["model"], r["sha"], r["n"]) for r in rows]


def choose_model(conn: sqlite3.Connection, model: str | None = None) -> ModelChoice:
    """``model`` (a name, or ``name@sha`` with a hash prefix) among the store's models, else the
    latest scan's model. Raises ``InputError`` for an empty store or an unknown name."""
    models = _models(conn)
    if not models:
        raise InputError("the results store holds no scanned files")
    if model is None:
        last = conn.execute(
            "SELECT model, model_sha256 FROM scans ORDER BY id DESC LIMIT 1"
        ).fetchone()
        for name, sha, _ in models:
            if last is not None and (name, sha) == (last["model"], last["model_sha256"]):
                return ModelChoice(name, sha)
        return ModelChoice(models[0][0], models[0][1])
    name, _, prefix = model.partition("@")
    for m, sha, _ in models:  # latest first: a name scanned by several versions -> the latest
        if m == name and (not prefix or (sha or "").startswith(prefix)):
            return ModelChoice(m, sha)
    known = ", ".join(sorted({f"{m}@{(s or '')[:12]}".rstrip("@") for m, s, _ in models}))
    raise InputError(f"no files scanned with model {model!r} in this store; it holds: {known}")


@dataclass
class FaceEntry:
    frame_index: int | None  # None for an image's face
    face_index: int
    track_id: int | None
    box: tuple[float, float, float, float]
    det_score: float
    fake_probability: float
    label: str
    experts: dict[str, float] | None
    thumbnail: bytes | None


@dataclass
class FileEntry:
    id: int
    path: str
    kind: str | None
    status: str
    label: str | None
    fake_probability: float | None
    seconds: float | None
    error: str | None
    n_faces: int = 0  # image faces / video face tracks
    n_face_rows: int = 0  # stored face crops (videos: one per face per sampled frame)
    faces: list[FaceEntry] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)  # paths of duplicates of this file


@dataclass
class FolderSummary:
    folder: str
    files: int = 0
    ok: int = 0
    fake: int = 0
    no_face: int = 0
    error: int = 0
    max_probability: float | None = None
    _sum: float = 0.0

    @property
    def mean_probability(self) -> float | None:
        return self._sum / self.ok if self.ok else None


@dataclass
class ScanReport:
    """Everything a report shows, read from one store for one model."""

    store: str
    model: ModelChoice
    other_models: list[ModelChoice]
    scans: int
    last_scan: str | None
    files: int
    by_status: dict[str, int]
    by_label: dict[str, int]
    duplicates: int
    faces: int
    histogram: list[dict[str, int]]  # HIST_BINS bins of [i/B, (i+1)/B): label -> files
    top: list[FileEntry]
    errors: list[FileEntry]
    n_errors: int
    folders: list[FolderSummary]
    n_folders: int
    seconds: float


def _loads(text: str | None):
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _file_entry(r: sqlite3.Row) -> FileEntry:
    return FileEntry(
        id=r["id"],
        path=r["path"],
        kind=r["kind"],
        status=r["status"],
        label=r["label"],
        fake_probability=r["fake_probability"],
        seconds=r["seconds"],
        error=r["error"],
        n_faces=r["n_faces"],
    )


def _faces(conn: sqlite3.Connection, file_id: int, limit: int) -> list[FaceEntry]:
    """The ``limit`` most suspicious faces of a file."""
    out = []
    for r in conn.execute(
        "SELECT * FROM faces WHERE file_id = ? "
        "ORDER BY fake_probability DESC, frame_index, face_index LIMIT ?",
        (file_id, limit),
    ):
        experts = _loads(r["experts"])
        out.append(
            FaceEntry(
                frame_index=r["frame_index"],
                face_index=r["face_index"],
                track_id=r["track_id"],
                box=(r["x0"], r["y0"], r["x1"], r["y1"]),
                det_score=r["det_score"],
                fake_probability=r["fake_probability"],
                label=r["label"],
                experts=experts if isinstance(experts, dict) else None,
                thumbnail=r["thumbnail"],
            )
        )
    return out


def load_report(path: str | os.PathLike, *, model: str | None = None, top: int = 25) -> ScanReport:
    """Read the store at ``path`` for ``model`` (default: the latest scan's) into a report.

    ``top``: how many of the most suspicious files (highest probability, status ok, not a
    duplicate of another file) are listed with their faces. Raises ``InputError`` for a
    missing, foreign or empty store and for an unknown model.
    """
    if top < 0:
        raise InputError("--top must be 0 or more")
    conn = open_store(path)
    try:
        choice = choose_model(conn, model)
        others = [
            ModelChoice(m, s) for m, s, _ in _models(conn) if (m, s) != (choice.name, choice.sha256)
        ]
        sel = "model = ? AND model_sha256 = ?"
        arg = (choice.name, choice.sha256)
        scans = conn.execute(
            f"SELECT COUNT(*) AS n, MAX(started_at) AS last FROM scans WHERE {sel}", arg
        ).fetchone()
        by_status = {
            r[0]: r[1]
            for r in conn.execute(
                f"SELECT status, COUNT(*) FROM files WHERE {sel} GROUP BY status ORDER BY 2 DESC",
                arg,
            )
        }
        by_label = {
            r[0]: r[1]
            for r in conn.execute(
                f"SELECT label, COUNT(*) FROM files WHERE {sel} AND label IS NOT NULL "
                "GROUP BY label ORDER BY 2 DESC",
                arg,
            )
        }
        duplicates = conn.execute(
            f"SELECT COUNT(*) FROM files WHERE {sel} AND duplicate_of IS NOT NULL", arg
        ).fetchone()[0]
        faces = conn.execute(
            f"SELECT COUNT(*) FROM faces WHERE file_id IN (SELECT id FROM files WHERE {sel})", arg
        ).fetchone()[0]
        histogram = [dict[str, int]() for _ in range(HIST_BINS)]
        for r in conn.execute(
            f"SELECT MIN(CAST(fake_probability * {HIST_BINS} AS INTEGER), {HIST_BINS - 1}) AS b, "
            f"COALESCE(label, '?') AS label, COUNT(*) AS n FROM files WHERE {sel} "
            "AND status = 'ok' AND fake_probability IS NOT NULL GROUP BY b, label",
            arg,
        ):
            histogram[max(0, int(r["b"]))][r["label"]] = r["n"]

        top_files = [
            _file_entry(r)
            for r in conn.execute(
                f"SELECT * FROM files WHERE {sel} AND status = 'ok' "
                "AND fake_probability IS NOT NULL AND duplicate_of IS NULL "
                "ORDER BY fake_probability DESC, path LIMIT ?",
                (*arg, top),
            )
        ]
        for f in top_files:
            f.faces = _faces(conn, f.id, FACES_PER_FILE)
            f.n_face_rows = conn.execute(
                "SELECT COUNT(*) FROM faces WHERE file_id = ?", (f.id,)
            ).fetchone()[0]
            f.copies = [
                r[0]
                for r in conn.execute(
                    "SELECT path FROM files WHERE duplicate_of = ? ORDER BY path LIMIT 6", (f.id,)
                )
            ]

        n_errors = by_status.get("error", 0)
        errors = [
            _file_entry(r)
            for r in conn.execute(
                f"SELECT * FROM files WHERE {sel} AND status = 'error' ORDER BY path LIMIT ?",
                (*arg, MAX_ERRORS),
            )
        ]

        folders: dict[str, FolderSummary] = {}
        seconds = 0.0
        for r in conn.execute(
            f"SELECT path, status, label, fake_probability, seconds FROM files WHERE {sel}", arg
        ):
            d = os.path.dirname(r["path"]) or "."
            s = folders.get(d)
            if s is None:
                s = folders[d] = FolderSummary(d)
            s.files += 1
            seconds += r["seconds"] or 0.0
            status, p = r["status"], r["fake_probability"]
            if status == "ok":
                s.ok += 1
                s.fake += r["label"] == "fake"
                if p is not None:
                    s._sum += p
                    s.max_probability = (
                        p if s.max_probability is None else max(s.max_probability, p)
                    )
            elif status == "no_face":
                s.no_face += 1
            elif status == "error":
                s.error += 1
        ranked = sorted(
            folders.values(),
            key=lambda s: (-s.fake, -(s.max_probability or 0.0), s.folder),
        )
        return ScanReport(
            store=str(path),
            model=choice,
            other_models=others,
            scans=scans["n"],
            last_scan=scans["last"],
            files=sum(by_status.values()),
            by_status=by_status,
            by_label=by_label,
            duplicates=duplicates,
            faces=faces,
            histogram=histogram,
            top=top_files,
            errors=errors,
            n_errors=n_errors,
            folders=ranked[:MAX_FOLDERS],
            n_folders=len(ranked),
            seconds=seconds,
        )
    finally:
        conn.close()


# -- HTML -----------------------------------------------------------------------------------

_CSS = """
:root { --fake:#c62828; --real:#2e7d32; --muted:#666; --line:#ddd; --bg:#fafafa; }
* { box-sizing:border-box; }
body { font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; margin:0;
  color:#222; background:#fff; }
header { padding:16px 24px; background:#263238; color:#fff; }
header h1 { margin:0 0 4px; font-size:20px; }
header p { margin:0; color:#cfd8dc; overflow-wrap:anywhere; }
main { padding:8px 24px 40px; max-width:1200px; }
h2 { font-size:17px; margin:28px 0 8px; border-bottom:1px solid var(--line); padding-bottom:4px; }
.cards { display:flex; flex-wrap:wrap; gap:10px; }
.card { border:1px solid var(--line); border-radius:6px; padding:8px 14px; background:var(--bg);
  min-width:110px; }
.card b { display:block; font-size:22px; }
.card span { color:var(--muted); }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line);
  vertical-align:top; }
th { background:var(--bg); font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
.path { font-family:ui-monospace,Menlo,Consolas,monospace; font-size:12.5px;
  overflow-wrap:anywhere; word-break:break-all; }
.fake { color:var(--fake); font-weight:600; }
.real { color:var(--real); }
.uncertain { color:#ef8f00; font-weight:600; }
.muted { color:var(--muted); }
.suspect { border:1px solid var(--line); border-radius:6px; margin:10px 0; padding:10px 12px; }
.suspect h3 { margin:0 0 6px; font-size:14px; display:flex; gap:10px; align-items:baseline; }
.suspect h3 .prob { font-size:18px; }
.faces { display:flex; flex-wrap:wrap; gap:10px; }
figure { margin:0; width:150px; }
figure img { width:150px; height:150px; object-fit:cover; border-radius:4px;
  background:#eee; display:block; }
figcaption { font-size:12px; }
figcaption .experts { color:var(--muted); }
svg text { font:11px system-ui,sans-serif; fill:#444; }
.legend span { display:inline-block; width:10px; height:10px; margin:0 4px 0 12px; }
.scroll { overflow-x:auto; }
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'"
_LABEL_COLOURS = {"fake": "#c62828", "uncertain": "#ef8f00", "real": "#2e7d32"}
_LABEL_ORDER = ("real", "uncertain", "fake")


def _e(value: object) -> str:
    """HTML-escaped text (quotes too: safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def _p(value: float | None, nd: int = 3) -> str:
    return "–" if value is None else f"{value:.{nd}f}"


def _jpeg_uri(blob: bytes | None) -> str | None:
    if not blob or bytes(blob[:3]) != b"\xff\xd8\xff":  # only JPEG bytes become an image
        return None
    return "data:image/jpeg;base64," + base64.b64encode(bytes(blob)).decode("ascii")


def _histogram_svg(hist: list[dict[str, int]]) -> str:
    w, h, left, bottom, top = 640, 220, 44, 30, 10
    plot_w, plot_h = w - left - 10, h - bottom - top
    n = len(hist)
    peak = max((sum(b.values()) for b in hist), default=0) or 1
    bw = plot_w / n
    present = {k for b in hist for k in b}
    labels = [k for k in _LABEL_ORDER if k in present] + sorted(present - set(_LABEL_ORDER))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="100%" '
        f'style="max-width:{w}px" role="img" id="histogram" '
        'aria-label="Histogram of file fake probabilities">'
    ]
    for frac in (0, 0.5, 1):
        y = top + plot_h * (1 - frac)
        parts.append(
            f'<line x1="{left}" x2="{w - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e0e0e0"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{round(peak * frac)}</text>'
        )
    for i, b in enumerate(hist):
        y = top + plot_h
        for lab in labels:
            c = b.get(lab, 0)
            if not c:
                continue
            bh = plot_h * c / peak
            y -= bh
            parts.append(
                f'<rect class="bar" x="{left + i * bw + 1:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" '
                f'height="{bh:.1f}" fill="{_LABEL_COLOURS.get(lab, "#78909c")}">'
                f"<title>{i / n:.2f}–{(i + 1) / n:.2f}: {c} {_e(lab)}</title></rect>"
            )
    for t in (0, 0.25, 0.5, 0.75, 1):
        x = left + plot_w * t
        parts.append(f'<text x="{x:.1f}" y="{h - bottom + 16}" text-anchor="middle">{t:g}</text>')
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{h - 2}" text-anchor="middle">'
        "probability of a fake (file)</text></svg>"
    )
    legend = "".join(
        f'<span style="background:{_LABEL_COLOURS.get(lab, "#78909c")}"></span>{_e(lab)}'
        for lab in labels
    )
    return "".join(parts) + f'<div class="legend muted">{legend}</div>'


def _face_figure(face: FaceEntry) -> str:
    uri = _jpeg_uri(face.thumbnail)
    img = f'<img src="{uri}" alt="face">' if uri else '<div class="muted">no thumbnail</div>'
    where = ""
    if face.frame_index is not None:
        where = f"frame {face.frame_index}"
        where += f", track {face.track_id}" if face.track_id is not None else ""
    experts = ""
    if face.experts:
        experts = " · ".join(
            f"{_e(k)} {_p(v, 2)}"
            for k, v in sorted(face.experts.items())
            if isinstance(v, int | float)
        )
        experts = f'<div class="experts">{experts}</div>'
    return (
        f"<figure>{img}<figcaption>"
        f"<span class='{_e(face.label)}'>{_p(face.fake_probability)}</span> "
        f"<span class='muted'>{_e(where)}</span>{experts}</figcaption></figure>"
    )


def _suspect(rank: int, f: FileEntry) -> str:
    faces = "".join(_face_figure(x) for x in f.faces)
    more = (
        f'<p class="muted">{f.n_face_rows - len(f.faces)} more face crops not shown</p>'
        if f.n_face_rows > len(f.faces)
        else ""
    )
    if f.copies:
        more += (
            '<p class="muted">Same content at: '
            + ", ".join(f'<span class="path">{_e(c)}</span>' for c in f.copies[:5])
            + (" …" if len(f.copies) > 5 else "")
            + "</p>"
        )
    return (
        f'<section class="suspect" data-rank="{rank}">'
        f'<h3><span class="prob {_e(f.label)}">{_p(f.fake_probability)}</span>'
        f'<span class="path">{_e(f.path)}</span></h3>'
        f'<div class="muted">{_e(f.kind)} · {_e(f.label)} · {f.n_faces} '
        f"{'face track(s)' if f.kind == 'video' else 'face(s)'}</div>"
        f'<div class="faces">{faces}</div>{more}</section>'
    )


def render_html(r: ScanReport) -> str:
    """The report as one self-contained HTML document."""
    status_cards = "".join(
        f'<div class="card" data-status="{_e(k)}"><b>{v}</b><span>{_e(k)}</span></div>'
        for k, v in r.by_status.items()
    )
    label_cards = "".join(
        f'<div class="card" data-label="{_e(k)}"><b class="{_e(k)}">{v}</b>'
        f"<span>{_e(k)}</span></div>"
        for k, v in r.by_label.items()
    )
    others = (
        "<p class='muted'>Other models in this store (choose with --model): "
        + ", ".join(_e(m.describe()) for m in r.other_models)
        + "</p>"
        if r.other_models
        else ""
    )
    top = "".join(_suspect(i + 1, f) for i, f in enumerate(r.top)) or (
        "<p class='muted'>No file with a face was scanned.</p>"
    )
    if r.errors:
        rows = "".join(
            f'<tr><td class="path">{_e(f.path)}</td><td>{_e(f.error)}</td></tr>' for f in r.errors
        )
        errors = f"<table id='errors'><tr><th>file</th><th>error</th></tr>{rows}</table>"
        if r.n_errors > len(r.errors):
            errors += f"<p class='muted'>{r.n_errors - len(r.errors)} more errors not shown.</p>"
    else:
        errors = "<p class='muted'>No errors.</p>"
    frows = "".join(
        f'<tr><td class="path">{_e(s.folder)}</td><td class="num">{s.files}</td>'
        f'<td class="num">{s.ok}</td><td class="num fake">{s.fake or ""}</td>'
        f'<td class="num">{s.no_face}</td><td class="num">{s.error}</td>'
        f'<td class="num">{_p(s.mean_probability)}</td>'
        f'<td class="num">{_p(s.max_probability)}</td></tr>'
        for s in r.folders
    )
    more_folders = (
        f"<p class='muted'>{r.n_folders - len(r.folders)} more folders not shown (see --csv).</p>"
        if r.n_folders > len(r.folders)
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>facetrust scan report: {_e(r.model.describe())}</title>
<style>{_CSS}</style></head>
<body>
<header><h1>facetrust scan report</h1>
<p>store <span class="path">{_e(r.store)}</span> · model <b id="model">{_e(r.model.describe())}</b>
 · {r.scans} scan run(s), last {_e(r.last_scan or "–")}</p></header>
<main>
{others}
<h2>Counts</h2>
<div class="cards" id="counts"><div class="card"><b>{r.files}</b><span>files</span></div>
{status_cards}<div class="card"><b>{r.faces}</b><span>faces</span></div>
<div class="card"><b>{r.duplicates}</b><span>duplicates</span></div></div>
<div class="cards" id="labels" style="margin-top:10px">{label_cards}</div>
<p class="muted">Processing time summed over files: {r.seconds:.1f} s. A file's probability is
the model's calibrated probability of a fake; its label uses the checkpoint's threshold.</p>
<h2>Score histogram</h2>
<div class="scroll">{_histogram_svg(r.histogram)}</div>
<h2>Most suspicious files</h2>
<p class="muted">Highest probability of a fake first; duplicates of a listed file are left out.
Each face shows its probability and each expert's own probability.</p>
<div id="suspects">{top}</div>
<h2>Errors ({r.n_errors})</h2>
{errors}
<h2>Folders ({r.n_folders})</h2>
<div class="scroll"><table id="folders"><tr><th>folder</th><th class="num">files</th>
<th class="num">ok</th><th class="num">fake</th><th class="num">no face</th>
<th class="num">error</th><th class="num">mean p</th><th class="num">max p</th></tr>
{frows}</table></div>{more_folders}
</main></body></html>
"""


def write_html(r: ScanReport, out: str | os.PathLike) -> Path:
    """Write :func:`render_html` to ``out`` atomically."""
    text = render_html(r)
    return atomic_write(out, lambda p: p.write_text(text, encoding="utf-8"), suffix=".html")


# -- CSV ------------------------------------------------------------------------------------

CSV_COLUMNS = [
    "path",
    "folder",
    "kind",
    "status",
    "label",
    "fake_probability",
    "faces",
    "experts_max",
    "duplicate_of",
    "error",
    "size",
    "sha256",
    "seconds",
    "scanned_at",
    "model",
    "model_sha256",
]


def _cell(value: object) -> object:
    """A text cell a spreadsheet will not run as a formula (OWASP's CSV-injection guard: a
    leading = + - @ tab or CR gets a quote); numbers are kept as they are."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv_rows(path: str | os.PathLike, model: str | None) -> Iterator[list[object]]:
    conn = open_store(path)
    try:
        choice = choose_model(conn, model)
        rows = conn.execute(
            "SELECT f.*, o.path AS original FROM files f LEFT JOIN files o "
            "ON o.id = f.duplicate_of WHERE f.model = ? AND f.model_sha256 = ? ORDER BY f.path",
            (choice.name, choice.sha256),
        )
        for r in rows:
            experts: dict[str, float] = {}
            for (e,) in conn.execute(
                "SELECT experts FROM faces WHERE file_id = ? AND experts IS NOT NULL",
                (r["duplicate_of"] or r["id"],),
            ):
                d = _loads(e)
                if isinstance(d, dict):
                    for k, v in d.items():
                        if isinstance(v, int | float):
                            experts[k] = max(experts.get(k, 0.0), float(v))
            yield [
                r["path"],
                os.path.dirname(r["path"]) or ".",
                r["kind"],
                r["status"],
                r["label"],
                r["fake_probability"],
                r["n_faces"],
                json.dumps({k: round(v, 4) for k, v in sorted(experts.items())}) if experts else "",
                r["original"],
                r["error"],
                r["size"],
                r["sha256"],
                r["seconds"],
                r["scanned_at"],
                r["model"],
                r["model_sha256"],
            ]
    finally:
        conn.close()


def write_csv(path: str | os.PathLike, out: str | os.PathLike, *, model: str | None = None) -> int:
    """One row per file of ``model`` (default: the latest scan's) in the store at ``path``,
    sorted by path, written atomically to ``out``; returns the number of rows. ``experts_max`` is
    each expert's highest probability over the file's faces (JSON). Text cells that a
    spreadsheet would run as a formula get a leading ``'``."""
    rows = _csv_rows(path, model)
    first = next(rows, None)  # open and check the store before creating the output
    n = 0

    def write(tmp: Path) -> None:
        nonlocal n
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(CSV_COLUMNS)
            if first is not None:
                w.writerow([_cell(v) for v in first])
                n += 1
            for row in rows:
                w.writerow([_cell(v) for v in row])
                n += 1

    atomic_write(out, write, suffix=".csv")
    return n
