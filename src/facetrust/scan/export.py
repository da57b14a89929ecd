"""A results store's tables as Parquet or CSV files for analytics (``facetrust scan-export``).

One file per table, named after the output: ``out.parquet`` holds the files table (one row per
scanned file and model), ``out.faces.parquet`` the faces (``file_id`` joins ``files.id``),
``out.frames.parquet`` the sampled video frames and ``out.scans.parquet`` the scan runs; the
columns are the store's (see :mod:`facetrust.scan.store`). A duplicate's ``files`` row has no
faces of its own: join through ``duplicate_of``. In Parquet a face's ``experts`` is a map from
expert name to probability and ``thumbnail`` the JPEG bytes; CSV keeps ``experts`` as JSON text
and leaves thumbnails out. Rows are streamed in batches, so a store of millions of files exports in
flat memory. Each output is written atomically (a reader never sees half a file).
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from facetrust.errors import InputError
from facetrust.files import atomic_write
from facetrust.scan.report import choose_model, open_store

__all__ = ["FORMATS", "ExportedTable", "export_store", "output_paths"]

FORMATS = ("parquet", "csv")
TABLES = ("files", "faces", "frames", "scans")
BATCH_ROWS = 5000


@dataclass(frozen=True)
class ExportedTable:
    table: str
    path: Path
    rows: int


def _format(out: Path, fmt: str | None) -> str:
    if fmt is None:
        fmt = out.suffix.lower().lstrip(".")
        if fmt not in FORMATS:
            raise InputError(
                f"cannot tell the format from {out.name!r}: name it .parquet or .csv, "
                "or pass --format parquet|csv"
            )
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}")
    return fmt


def output_paths(out: str | os.PathLike, fmt: str | None = None) -> dict[str, Path]:
    """table -> output path: ``out`` for files, ``<stem>.<table>.<ext>`` beside it for the rest."""
    out = Path(out)
    fmt = _format(out, fmt)
    stem = out.name[: -len(out.suffix)] if out.suffix.lower() == f".{fmt}" else out.name
    paths = {"files": out}
    for t in TABLES[1:]:
        paths[t] = out.with_name(f"{stem}.{t}.{fmt}")
    return paths


def _columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, str]]:
    return [(r[1], (r[2] or "").upper()) for r in conn.execute(f"PRAGMA table_info({table})")]


def _select(conn: sqlite3.Connection, table: str, model: str | None) -> tuple[str, tuple]:
    """The query for ``table``'s rows of ``model`` (all models when None)."""
    order = {"files": "id", "faces": "file_id", "frames": "file_id", "scans": "id"}[table]
    cols = [c for c, _ in _columns(conn, table)]
    order_by = ", ".join(c for c in (order, "frame_index", "face_index") if c in cols)
    if model is None:
        return f"SELECT * FROM {table} ORDER BY {order_by}", ()
    choice = choose_model(conn, model)
    arg = (choice.name, choice.sha256)
    sel = "model = ? AND model_sha256 IS ?"
    if table in ("files", "scans"):
        return f"SELECT * FROM {table} WHERE {sel} ORDER BY {order_by}", arg
    return (
        f"SELECT * FROM {table} WHERE file_id IN (SELECT id FROM files WHERE {sel}) "
        f"ORDER BY {order_by}",
        arg,
    )


def _json(value):
    if value is None or isinstance(value, dict):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return None


def _arrow_schema(columns: list[tuple[str, str]]):
    import pyarrow as pa

    fields = []
    for name, decl in columns:
        if name == "experts":
            t = pa.map_(pa.string(), pa.float64())
        elif "INT" in decl:
            t = pa.int64()
        elif any(k in decl for k in ("REAL", "FLOA", "DOUB")):
            t = pa.float64()
        elif "BLOB" in decl:
            t = pa.binary()
        else:
            t = pa.string()
        fields.append(pa.field(name, t))
    return pa.schema(fields)


def _batches(cur: sqlite3.Cursor) -> Iterator[list[tuple]]:
    while rows := cur.fetchmany(BATCH_ROWS):
        yield rows


def _write_parquet(conn, table, query, args, path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = _columns(conn, table)
    schema = _arrow_schema(columns)
    names = [c for c, _ in columns]
    n = 0

    def write(tmp: Path) -> None:
        nonlocal n
        with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
            for rows in _batches(conn.execute(query, args)):
                cols = list(zip(*rows, strict=True))
                arrays = []
                for i, name in enumerate(names):
                    values = list(cols[i])
                    if name == "experts":
                        values = [
                            None if not isinstance(d := _json(v), dict) else list(d.items())
                            for v in values
                        ]
                    elif schema.field(i).type == pa.string():
                        values = [None if v is None else str(v) for v in values]
                    arrays.append(pa.array(values, type=schema.field(i).type))
                w.write_table(pa.Table.from_arrays(arrays, schema=schema))
                n += len(rows)

    atomic_write(path, write, suffix=".parquet")
    return n


def _write_csv(conn, table, query, args, path: Path) -> int:
    columns = _columns(conn, table)
    keep = [i for i, (_, decl) in enumerate(columns) if "BLOB" not in decl]
    n = 0

    def write(tmp: Path) -> None:
        nonlocal n
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow([columns[i][0] for i in keep])
            for rows in _batches(conn.execute(query, args)):
                w.writerows([[r[i] for i in keep] for r in rows])
                n += len(rows)

    atomic_write(path, write, suffix=".csv")
    return n


def export_store(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    fmt: str | None = None,
    model: str | None = None,
) -> list[ExportedTable]:
    """Export the store at ``path`` to ``out`` and its sibling files (see the module doc).

    ``fmt``: ``parquet`` or ``csv`` (default: from ``out``'s suffix). ``model``: only the rows
    of this model (a name or ``name@sha-prefix``); all models when None. Raises ``InputError``
    for a missing, foreign or empty store. Returns each table's path and row count.
    """
    paths = output_paths(out, fmt)
    fmt = _format(Path(out), fmt)
    conn = open_store(path)
    try:
        choose_model(conn, model)  # an empty store or an unknown model: one line, no output
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        done = []
        for table in TABLES:
            if table not in tables:
                continue
            query, args = _select(conn, table, model)
            writer = _write_parquet if fmt == "parquet" else _write_csv
            done.append(
                ExportedTable(table, paths[table], writer(conn, table, query, args, paths[table]))
            )
        return done
    finally:
        conn.close()
