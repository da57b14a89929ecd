"""Manifests: JSONL files with one row per face (or per image before faces are found).

A prepare step writes them; datasets read only manifests. Paths in a row are stored as given
(absolute, or relative to the manifest's folder) and resolved with ``resolve``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from facetrust.errors import InputError

if TYPE_CHECKING:
    import numpy as np

Label = Literal["real", "fake"]


class ManifestRow(BaseModel):
    """One face crop (or one media file) with its label and provenance."""

    model_config = ConfigDict(extra="allow")

    path: str  # the original image or video file
    label: Label
    source: str = "unknown"  # data set / origin; used for leave-one-source-out
    kind: str | None = None  # manipulation kind of fakes (face_swap, gan, diffusion, ...)
    video_id: str | None = None  # frames of one video share it
    frame: int | None = None  # frame index in the video
    identity: str | None = None  # person, when known
    face: int = 0  # face index within the image / frame
    box: list[float] | None = None  # x1, y1, x2, y2 in the original media
    det_score: float | None = None
    crop: str | None = None  # cached aligned crop (PNG)
    landmarks: str | None = None  # .npy with (468, 2) landmarks in crop pixels
    width: int | None = None  # original media size
    height: int | None = None
    format: str | None = None  # JPEG, PNG, ... (by content)
    mode: str | None = None  # colour mode: RGB, L, RGBA, ...
    jpeg_quality: int | None = None  # estimated from quantisation tables
    split: str | None = None  # train / val / test / calib

    @property
    def y(self) -> int:
        return 1 if self.label == "fake" else 0

    def group(self, by: str) -> str:
        """The group key a split keeps together: ``source``, ``video`` or ``identity``."""
        if by == "source":
            return self.source
        if by == "video":
            return f"{self.source}/{self.video_id or self.path}"
        if by == "identity":
            return f"{self.source}/{self.identity or self.video_id or self.path}"
        raise InputError(f"unknown grouping {by!r}: use source, video or identity")


def resolve(manifest: str | os.PathLike, p: str | None) -> Path | None:
    """A path from a row of ``manifest``, made absolute."""
    if p is None:
        return None
    q = Path(p)
    return q if q.is_absolute() else Path(manifest).resolve().parent / q


def read_crop(manifest: str | os.PathLike, crop: str) -> np.ndarray:
    """A row's cached aligned crop (``crop`` relative to ``manifest``) as RGB uint8."""
    import numpy as np
    from PIL import Image

    path = resolve(manifest, crop)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as e:
        raise InputError(
            f"cannot read the cached crop {path} (rerun `facetrust prepare`): {e}"
        ) from None


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """All rows of a JSONL manifest; a bad line is an ``InputError`` naming the line."""
    return list(iter_manifest(path))


def iter_manifest(path: str | os.PathLike) -> Iterator[ManifestRow]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"manifest not found: {p}")
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield ManifestRow.model_validate(json.loads(line))
            except (json.JSONDecodeError, ValidationError) as exc:
                first = str(exc).splitlines()[0]
                raise InputError(f"{p}:{n}: not a valid manifest row ({first})") from None


def write_manifest(path: str | os.PathLike, rows: Iterable[ManifestRow]) -> Path:
    """Write rows as JSONL atomically (a temporary file replaces the target)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(r.model_dump_json(exclude_none=True) + "\n")
    os.replace(tmp, p)
    return p
