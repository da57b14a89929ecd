"""Frozen-expert features of a prepared manifest, computed once and cached on disk.

For every row with a face crop, :func:`extract_features` stores each requested expert's
features (any registered :class:`~facetrust.detect.experts.Expert`, computed by the expert
itself, so training sees exactly what detection computes) for two views of the crop:

- ``clean``: the cached aligned crop, as detection sees it;
- ``degraded``: the same crop shrunk to a random side in 64-160 px, JPEG-compressed at a random
  quality in 50-95 and enlarged back (seeded per row), so a head trained on both views cannot
  rely on sharpness or resolution, the trap of the shared data (large sharp fakes, small
  upscaled reals).

Features are kept by the expert's ``cache_key``; an expert can read a cache made with other
options when it can derive its features from it (``Expert.select``: the CLIP expert of blocks
6, 9, 12 from a cache of all 12 blocks). Work is written in chunks (``chunk-00000.npz`` ...)
beside ``index.json``; an interrupted run resumes at the first missing chunk, and a finished
one is not recomputed.

A table can also hold features of images made from the rows rather than read: with ``make``
(e.g. :func:`pseudo_twins`, one pseudo-fake per real training face, its content-aligned twin),
each row's clean view is ``make(row)`` and its degraded view the same image degraded, so an
expert head can be trained on pseudo-fakes exactly as on the cached crops.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from facetrust.data.manifest import ManifestRow, read_crop
from facetrust.detect.experts import Expert
from facetrust.errors import InputError
from facetrust.files import atomic_write, atomic_write_text

__all__ = [
    "VIEWS",
    "FeatureTable",
    "checked_views",
    "degrade",
    "extract_features",
    "load_features",
    "pseudo_twins",
]

VIEWS = ("clean", "degraded")
CHUNK = 256


def degrade(img: np.ndarray, seed: int) -> np.ndarray:
    """Shrink to a random side in [64, 160] (area), JPEG at quality 50-95, enlarge back
    (bilinear): one draw of the re-encode chain of :class:`facetrust.data.normalise.Normaliser`
    at absolute sides (seeded per row), whatever the crop's size."""
    from facetrust.data.normalise import Normaliser, Reencode

    rng = np.random.default_rng(seed)
    side = int(rng.integers(64, 161))
    quality = int(rng.integers(50, 96))
    chain = Reencode(apply=True, scale=side / img.shape[0], quality=quality)
    return Normaliser(size=None, scale=(1.0, 1.0)).apply(img, chain)


def checked_views(views) -> tuple[str, ...]:
    """``views`` as a tuple: both :data:`VIEWS` or the clean one alone; InputError otherwise."""
    views = tuple(views)
    if views not in (VIEWS, VIEWS[:1]):
        raise InputError(f"views must be {VIEWS} or {VIEWS[:1]}, got {views}")
    return views


def _row_seed(key: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha1(f"{seed}:{key}".encode()).digest()[:4], "little")


class FeatureTable:
    """Features of manifest rows, looked up by crop path and expert."""

    def __init__(self, keys: list[str], experts: list[dict[str, Any]], arrays: dict):
        self.keys = keys
        self.experts = experts  # [{"name", "options"}], array i is f"e{i}_{view}"
        self.arrays = arrays
        self.index = {k: i for i, k in enumerate(keys)}

    def rows(self, rows: list[ManifestRow]) -> np.ndarray:
        """Positions of ``rows`` in the table (``InputError`` if one was not extracted)."""
        try:
            return np.array([self.index[r.crop] for r in rows], dtype=np.int64)
        except KeyError as e:
            raise InputError(
                f"no cached features for crop {e.args[0]} (rerun extraction)"
            ) from None

    def get(self, expert: Expert, view: str, idx: np.ndarray) -> np.ndarray:
        """``expert``'s features of the rows at ``idx`` (float32), from whichever cached
        expert of the same name it can derive them from. A run of consecutive rows of a whole
        cached expert is read as a view of the table, not copied (the cache's arrays hold ~1 GB
        per view on the shared data): a float32 expert comes back as that view, read-only; a
        float16 one (CLIP) as its one float32 copy, with no float16 copy before it."""
        if view not in VIEWS:
            raise InputError(f"unknown view {view!r}: {', '.join(VIEWS)}")
        idx = np.asarray(idx)
        run = len(idx) > 0 and bool(np.all(np.diff(idx) == 1))
        for i, e in enumerate(self.experts):
            if e["name"] != expert.name:
                continue
            if f"e{i}_{view}" not in self.arrays:
                raise InputError(f"the feature cache holds no {view} view (extracted without it)")
            array = self.arrays[f"e{i}_{view}"]
            if run:
                feats = array[idx[0] : idx[-1] + 1]
                feats.flags.writeable = False
            else:
                feats = array[idx]
            out = expert.select(e["options"], feats)
            if out is not None:
                return np.asarray(out, np.float32)
        raise InputError(
            f"the feature cache has no features for {expert!r}; extract them into a new folder"
        )


def extract_features(
    rows: list[ManifestRow],
    manifest: Path,
    out_dir: Path,
    experts: list[Expert],
    *,
    seed: int = 0,
    log: Callable[[str], None] = print,
    make: Callable[[ManifestRow], np.ndarray] | None = None,
    about: Any = None,
    views: tuple[str, ...] = VIEWS,
) -> FeatureTable:
    """Compute (or resume) ``experts``' features of every row with a crop; return the table.

    ``make(row)`` replaces the row's cached crop by an image made from it; ``about`` (JSON)
    says what ``make`` makes and is part of the folder's identity, like the experts.
    ``views``: both (the default) or the clean one only (half the time, for heads trained on
    the clean view); a folder of both views serves a clean-only request, not the reverse."""
    views = checked_views(views)
    rows = [r for r in rows if r.crop]
    if not rows:
        raise InputError("no rows with face crops (run `facetrust prepare` first)")
    if not experts:
        raise InputError("no experts to extract features for")
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(r.crop for r in rows))
    row_of = {r.crop: r for r in rows}
    described = [{"name": e.name, "options": e.options} for e in experts]
    index = {"keys": keys, "experts": described, "seed": seed, "chunk": CHUNK, "about": about}
    if views != VIEWS:
        index["views"] = list(views)
    index_path = out_dir / "index.json"
    if index_path.exists():
        old = json.loads(index_path.read_text())
        same = {k: old.get(k) for k in ("experts", "seed", "chunk", "about")} == {
            k: index[k] for k in ("experts", "seed", "chunk", "about")
        }
        had = old.get("views", list(VIEWS))
        if not same or not set(views) <= set(had) or not set(keys) <= set(old.get("keys", [])):
            raise InputError(
                f"{out_dir} holds features of other rows, experts or settings; use a new folder"
            )
        keys = old["keys"]  # a superset, in its own order: resume or reuse it
        index["keys"] = keys
        views = tuple(v for v in VIEWS if v in had)  # a resume makes every view it holds
    else:
        atomic_write_text(index_path, json.dumps(index))
    started = time.monotonic()
    n_chunks = (len(keys) + CHUNK - 1) // CHUNK
    for c in range(n_chunks):
        path = out_dir / f"chunk-{c:05d}.npz"
        if path.exists():
            continue
        part = keys[c * CHUNK : (c + 1) * CHUNK]
        clean = [read_crop(manifest, k) if make is None else make(row_of[k]) for k in part]
        made = {"clean": clean}
        if "degraded" in views:
            made["degraded"] = [
                degrade(img, _row_seed(k, seed)) for k, img in zip(part, clean, strict=True)
            ]
        arrays = {}
        for i, expert in enumerate(experts):
            for view, crops in made.items():
                f = np.asarray(expert.features(crops), np.float32)
                arrays[f"e{i}_{view}"] = f.astype(np.float16) if f.shape[1] >= 1024 else f
        atomic_write(path, lambda q, a=arrays: np.savez(q, **a), suffix=".npz")
        rate = (time.monotonic() - started) / 60
        log(f"features: chunk {c + 1}/{n_chunks} done ({rate:.1f} min so far)")
    return load_features(out_dir)


def pseudo_twins(
    rows: list[ManifestRow],
    manifest: Path,
    kinds: dict[str, float],
    seed: int = 0,
    controls: bool = False,
) -> tuple[list[ManifestRow], Callable[[ManifestRow], np.ndarray], str]:
    """The real rows with a crop and landmarks, ``make(row)``: one pseudo-fake of that row
    (kinds drawn by ratio, :class:`~facetrust.data.pseudo.PseudoFakeMix`; a splice's donor is
    another real of the same source), seeded by the row, made as training makes them
    (:meth:`~facetrust.train.datasets.FaceCropDataset.pseudo_fake`), and what makes them (the
    mix's ``repr``: its makers' settings and any weights' digest). ``controls``: ``make``
    gives each twin's real-labelled control instead (the maker's ``control``), from the same
    draws; kinds without controls are refused."""
    from facetrust.data.pseudo import PseudoFakeMix
    from facetrust.data.pseudo.registry import PseudoFakeMaker
    from facetrust.train.datasets import FaceCropDataset

    mix = PseudoFakeMix(kinds)
    if controls:
        for kind, maker in mix.makers.items():
            if type(maker).control is PseudoFakeMaker.control:
                raise InputError(f"{kind} pseudo-fakes have no real-labelled control")
    reals = list({r.crop: r for r in rows if r.crop and r.label == "real" and r.landmarks}.values())
    if not reals:
        raise InputError(
            "pseudo-fakes need real training faces with landmarks (`facetrust prepare` writes them)"
        )
    data = FaceCropDataset(reals, manifest, lambda x: x, (0.0,) * 3, (1.0,) * 3, pseudo=mix)
    position = {r.crop: i for i, r in enumerate(data.rows)}

    def make(row: ManifestRow) -> np.ndarray:
        rng = np.random.default_rng(_row_seed("pseudo:" + row.crop, seed))
        return data.pseudo_fake(position[row.crop], rng, control=controls)

    return reals, make, repr(mix) + " controls" * controls


def load_features(out_dir: Path) -> FeatureTable:
    index_path = out_dir / "index.json"
    if not index_path.exists():
        raise InputError(f"no features in {out_dir} (run the extraction first)")
    index = json.loads(index_path.read_text())
    if "experts" not in index:
        raise InputError(f"{out_dir} holds features in an older layout; extract into a new folder")
    n_chunks = (len(index["keys"]) + index["chunk"] - 1) // index["chunk"]
    parts = []
    for c in range(n_chunks):
        path = out_dir / f"chunk-{c:05d}.npz"
        if not path.exists():
            raise InputError(f"features in {out_dir} are incomplete (chunk {c} missing); resume")
        with np.load(path) as z:
            parts.append({k: z[k] for k in z.files})
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return FeatureTable(index["keys"], index["experts"], arrays)
