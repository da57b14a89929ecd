"""Finding labelled media: a folder (``real/`` and ``fake/`` anywhere on the path, optional
split folders), a CSV file or a facetrust manifest, turned into one ``ManifestRow`` per file."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Literal

from facetrust.data.manifest import FACE_FIELDS, ManifestRow, read_manifest
from facetrust.errors import InputError, one_line
from facetrust.media.sniff import VIDEO_SUFFIXES
from facetrust.media.walk import walk_media

__all__ = ["FAKE_NAMES", "REAL_NAMES", "SPLIT_NAMES", "discover"]

#: Folder names (case-insensitive) that give a label. A name matches exactly, or, when no folder
#: on the path matches exactly, by one of its ``_``/``-``/space separated words.
REAL_NAMES = frozenset({"real", "reals", "original", "originals", "genuine", "pristine"})
FAKE_NAMES = frozenset({"fake", "fakes", "manipulated", "synthetic", "deepfake", "deepfakes"})
#: Folder names (case-insensitive) that give a split.
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}

_LABELS = {"real": "real", "fake": "fake", "0": "real", "1": "fake"}

_LABELS = {"real": "real", "fake": "fake", "0": "real", "1": "fake"}


def discover(src: str | os.PathLike, *, source_name: str | None = None) -> list[ManifestRow]:
    """Labelled rows, one per media file, found in ``src`` (no faces yet).

    ``src`` is a folder (labels from ``real/``, ``fake/`` and synonym folders at any depth,
    splits from ``train/``, ``val/``, ``test/`` folders), a CSV file (``path,label[,source,
    video_id,identity,kind,split]``, label real/fake or 0/1) or a facetrust JSONL manifest; a
    folder holding a ``manifest.jsonl`` is read through it. Paths in the rows are absolute.
    ``source`` is the row's own column, else ``source_name``, else the folder's name. Raises
    InputError when nothing labelled is found; files whose label is unclear are left out (see
    :func:`prepare`, which reports them).
    """
    rows, _ = _discover(Path(src), source_name)
    return rows


def _discover(
    src: Path, source_name: str | None
) -> tuple[list[ManifestRow], list[tuple[str, str]]]:
    """Rows and ``(path, reason)`` for files found but left out (unclear label)."""
    if not src.exists():
        raise InputError(f"source not found: {src}")
    if src.is_file():
        suffix = src.suffix.lower()
        if suffix == ".csv":
            return _from_csv(src, source_name), []
        if suffix in (".jsonl", ".json"):
            return _from_manifest(src, source_name), []
        raise InputError(f"cannot read labels from {src}: give a folder, a .csv or a .jsonl file")
    if (src / "manifest.jsonl").is_file():
        return _from_manifest(src / "manifest.jsonl", source_name), []
    return _from_folder(src, source_name)


def _words(name: str) -> set[str]:
    for sep in "-. ":
        name = name.replace(sep, "_")
    return {w for w in name.split("_") if w}


def _label_of(parts: list[str]) -> Literal["real", "fake", "unclear"] | None:
    """Label from folder names; ``None`` when no folder names one, ``unclear`` when they clash."""
    lower = [p.lower() for p in parts]
    exact = {"real" for p in lower if p in REAL_NAMES} | {"fake" for p in lower if p in FAKE_NAMES}
    if not exact:
        for p in lower:
            words = _words(p)
            real, fake = bool(words & REAL_NAMES), bool(words & FAKE_NAMES)
            if real != fake:
                exact.add("real" if real else "fake")
    if not exact:
        return None
    return exact.pop() if len(exact) == 1 else "unclear"


def _split_of(parts: list[str]) -> str | None:
    for p in parts:
        if p.lower() in SPLIT_NAMES:
            return SPLIT_NAMES[p.lower()]
    return None


def _from_folder(
    src: Path, source_name: str | None
) -> tuple[list[ManifestRow], list[tuple[str, str]]]:
    root = src.resolve()
    source = source_name or root.name
    rows: list[ManifestRow] = []
    unclear: list[tuple[str, str]] = []
    seen_media = 0
    for path in walk_media(root):
        seen_media += 1
        rel = path.relative_to(root)
        parts = list(rel.parts[:-1])
        label = _label_of(parts)
        if label is None:
            continue
        if label == "unclear":
            unclear.append((str(path), f"unclear label: folders {'/'.join(parts)} name both"))
            continue
        video_id = rel.with_suffix("").as_posix() if path.suffix.lower() in VIDEO_SUFFIXES else None
        rows.append(
            ManifestRow(
                path=str(path),
                label=label,
                source=source,
                video_id=video_id,
                split=_split_of(parts),
            )
        )
    if not rows and not unclear:
        what = f"{seen_media} media files but no" if seen_media else "no media files and no"
        raise InputError(
            f"{src}: {what} real/fake folders (expected e.g. real/ and fake/, Train/Real, "
            "or a manifest.jsonl or .csv)"
        )
    return rows, unclear


def _from_csv(path: Path, source_name: str | None) -> list[ManifestRow]:
    base = path.resolve().parent
    default_source = source_name or base.name
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            if "path" not in header or "label" not in header:
                raise InputError(f"{path}: the CSV header must name path and label columns")
            reader.fieldnames = header
            rows = []
            for n, rec in enumerate(reader, 2):
                rows.append(_csv_row(path, n, rec, base, default_source))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read {path}: {one_line(e)}") from None
    if not rows:
        raise InputError(f"{path}: no rows")
    return rows


def _csv_row(
    csv_path: Path, n: int, rec: dict[str, Any], base: Path, default_source: str
) -> ManifestRow:
    def get(key: str) -> str | None:
        v = rec.get(key)
        v = v.strip() if isinstance(v, str) else None
        return v or None

    p, raw_label = get("path"), get("label")
    if p is None:
        raise InputError(f"{csv_path}:{n}: empty path")
    label = _LABELS.get((raw_label or "").lower())
    if label is None:
        raise InputError(f"{csv_path}:{n}: label must be real/fake or 0/1, got {raw_label!r}")
    full = Path(p) if Path(p).is_absolute() else base / p
    video_id = get("video_id")
    if video_id is None and full.suffix.lower() in VIDEO_SUFFIXES:
        video_id = Path(p).with_suffix("").as_posix()
    split = get("split")
    return ManifestRow(
        path=str(full),
        label=label,
        source=get("source") or default_source,
        kind=get("kind"),
        video_id=video_id,
        identity=get("identity"),
        split=SPLIT_NAMES.get(split.lower(), split) if split else None,
    )


def _from_manifest(path: Path, source_name: str | None) -> list[ManifestRow]:
    base = path.resolve().parent
    out = []
    for row in read_manifest(path):
        data = row.model_dump(exclude=set(FACE_FIELDS))
        p = Path(row.path)
        data["path"] = str(p if p.is_absolute() else base / p)
        if "source" not in row.model_fields_set or row.source == "unknown":
            data["source"] = source_name or base.name
        if data.get("video_id") is None and p.suffix.lower() in VIDEO_SUFFIXES:
            data["video_id"] = p.with_suffix("").as_posix()
        out.append(ManifestRow.model_validate(data))
    if not out:
        raise InputError(f"{path}: no rows")
    return out
