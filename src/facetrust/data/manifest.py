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
from facetrust.files import atomic_write

if TYPE_CHECKING:
    import numpy as np

Label = Literal["real", "fake"]


#: Fields a manifest row gets from one face (prepare fills them; a listing's rows lack them).
FACE_FIELDS = (
    "frame",
    "face",
    "box",
    "det_score",
    "crop",
    "crop_size",
    "crop_margin",
    "crop_alignment",
    "landmarks",
    "width",
    "height",
    "format",
    "mode",
    "jpeg_quality",
)


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
    # the crop contract the crop was cut with (written by prepare; see faces.CropContract)
    crop_size: int | None = None
    crop_margin: float | None = None
    crop_alignment: str | None = None
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


def manifest_contract(rows: Iterable[ManifestRow]) -> tuple[int, float, str] | None:
    """The one crop contract ``(size, margin, alignment)`` of rows with crops; ``None`` when the
    rows predate recorded contracts; ``InputError`` when rows disagree."""
    seen: set[tuple] = set()
    for r in rows:
        if r.crop and r.crop_size is not None:
            seen.add((r.crop_size, r.crop_margin, r.crop_alignment))
    if len(seen) > 1:
        found = ", ".join(f"{s} px margin {m}" for s, m, _ in sorted(seen, key=str))
        raise InputError(f"the manifest mixes crops cut differently ({found}); prepare again")
    return next(iter(seen)) if seen else None


def check_contract(found, contract, data_name: str, model_name: str) -> None:
    """``InputError`` when a manifest's crop contract ``(size, margin, alignment)`` differs from
    ``contract`` (a ``CropContract``); ``found`` None (an older manifest) is accepted."""
    if found is None:
        return
    size, margin, alignment = found
    if (size, float(margin), alignment) != (contract.size, contract.margin, contract.alignment):
        raise InputError(
            f"crop contract differs: {data_name} has crops of {size} px, margin {margin:g}, "
            f"{alignment}; {model_name} expects {contract.describe()} "
            "(prepare the data again with the model's crop size and margin)"
        )


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

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(r.model_dump_json(exclude_none=True) + "\n")

    return atomic_write(path, write)
