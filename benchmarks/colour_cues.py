"""Colour-component cues of generated and edited faces: evidence that transfers to new kinds?

  uv run python benchmarks/colour_cues.py [--views clean,q75] [--in-dist configs/long.yaml] \
      [--with-clip] [--out JSON]

GAN and diffusion decoders build colour from learned filters, not from a camera's sensor and
demosaicing, and editing tools paste regions whose chroma noise differs from the face around
them; published detectors that read only colour statistics (McCloskey & Albright 2018,
saturation and exposure; Li et al. 2020, co-occurrences of chroma residuals; Nataraj et al.
2019, pixel co-occurrences) were trained on one GAN and tested on others. This benchmark
computes three such families on every prepared face's aligned 256 px crop:

- residual co-occurrences (SPAM-like): the first difference of each channel of YCrCb and of
  hue and saturation, clipped to +-2, and the co-occurrence of three neighbours along the
  difference, horizontally and vertically (125 bins a channel, 5 channels);
- saturation and exposure: a 16-bin histogram of HSV saturation, the share of clipped-high and
  clipped-low pixels, saturation's mean and spread;
- cross-channel residuals: the correlation of the Laplacians of R, G and B (camera
  demosaicing ties them), at full and half size;

in two views: the crop as prepared (``clean``) and the crop re-encoded as JPEG quality 75
(``q75``, one codec for every face whatever its source and label). Then, for each
leave-one-kind-out fold of ``loso.py``, a linear head (``facetrust fuse``'s fitting, its C
picked by grouped cross-validation over the training sources) scored on the held-out sources
(AUC with its 95 % interval, ECE); with ``--with-clip`` also the default's whole-face CLIP head
(clean view, C 0.003) and the mean of the two heads' logits. ``--in-dist CONFIG`` adds the AUC
on that config's val split (heads fitted on its train split) and the real-vs-real control
there. Last the source predictability of the features (8-way, reals only).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from facetrust.config import apply_threads
from facetrust.data.manifest import read_crop, read_manifest
from facetrust.detect.calibration import sigmoid
from facetrust.train.fusion import fit_linear_head
from facetrust.train.metrics import roc_auc
from facetrust.train.shortcuts import real_vs_real, source_predictability

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import FOLDS, fold_figures  # noqa: E402

T = 2  # residuals clipped to [-T, T]
BINS = (2 * T + 1) ** 3


def cooccurrence(ch: np.ndarray, circular: int = 0) -> np.ndarray:
    """Normalised co-occurrence of three neighbouring first differences of one channel,
    horizontal and vertical together (``circular``: the channel's period, for hue)."""
    ch = ch.astype(np.int16)
    hist = np.zeros(BINS)
    for axis in (0, 1):
        r = np.diff(ch, axis=axis)
        if circular:
            r = (r + circular // 2) % circular - circular // 2
        r = np.clip(r, -T, T) + T
        if axis == 1:
            a, b, c = r[:, :-2], r[:, 1:-1], r[:, 2:]
        else:
            a, b, c = r[:-2], r[1:-1], r[2:]
        k = 2 * T + 1
        hist += np.bincount((a * k * k + b * k + c).ravel(), minlength=BINS)
    return hist / hist.sum()


def saturation_stats(rgb: np.ndarray, hsv: np.ndarray) -> np.ndarray:
    s = hsv[..., 1].astype(np.float64) / 255
    hist = np.histogram(s, bins=16, range=(0, 1))[0] / s.size
    hi = np.mean(rgb.max(-1) >= 250)
    lo = np.mean(rgb.min(-1) <= 5)
    return np.concatenate([hist, [hi, lo, s.mean(), s.std()]])


def channel_correlations(rgb: np.ndarray) -> np.ndarray:
    out = []
    img = rgb.astype(np.float32)
    for _ in range(2):
        lap = [cv2.Laplacian(img[..., i], cv2.CV_32F).ravel() for i in range(3)]
        c = np.corrcoef(np.stack(lap))
        out += [c[0, 1], c[1, 2], c[0, 2]]
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return np.nan_to_num(np.array(out))


def colour_features(rgb: np.ndarray) -> np.ndarray:
    """The three families of one RGB uint8 crop, concatenated (5 * 125 + 20 + 6 values)."""
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)  # hue in 0-179
    parts = [cooccurrence(ycc[..., i]) for i in range(3)]
    parts += [cooccurrence(hsv[..., 0], circular=180), cooccurrence(hsv[..., 1])]
    parts += [saturation_stats(rgb, hsv), channel_correlations(rgb)]
    return np.concatenate(parts).astype(np.float32)


def reencode(rgb: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])  # fmt: skip
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _one(job) -> np.ndarray:
    manifest, crop, views = job
    img = read_crop(Path(manifest), crop)
    out = []
    for v in views:
        out.append(colour_features(img if v == "clean" else reencode(img, int(v[1:]))))
    return np.stack(out)


def all_features(rows, manifest: Path, views: list[str], cache: Path) -> np.ndarray:
    """(rows, views, dims) float32, cached in ``cache`` (an .npz keyed by the crops)."""
    keys = np.array([r.crop for r in rows])
    if cache.exists():
        z = np.load(cache)
        if list(z["views"]) == views and np.array_equal(z["keys"], keys):
            return z["x"]
    cv2.setNumThreads(1)
    t0 = time.time()
    jobs = [(str(manifest), r.crop, views) for r in rows]
    with ProcessPoolExecutor(2) as pool:
        x = np.stack(list(pool.map(_one, jobs, chunksize=64)))
    print(f"features of {len(rows)} faces in {time.time() - t0:.0f} s", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, x=x, keys=keys, views=np.array(views))
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--views", default="clean,q75")
    ap.add_argument("--in-dist", default="", help="a config: fit on its train split, score val")
    ap.add_argument("--with-clip", action="store_true", help="also the CLIP head and the mean")
    ap.add_argument("--manifest", default="data/shared.jsonl")
    ap.add_argument("--features", default="data/features-shared", help="the whole-face cache")
    ap.add_argument("--cache", default="data/colour-cues.npz")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    views = [v for v in args.views.split(",") if v]
    if not views or any(v != "clean" and not (v[0] == "q" and v[1:].isdigit()) for v in views):
        ap.error("--views: clean and/or qNN (a JPEG quality)")
    apply_threads(2)
    manifest = Path(args.manifest)
    rows = [r for r in read_manifest(manifest) if r.crop]
    y = np.array([r.y for r in rows])
    src = np.array([r.source for r in rows])
    videos = np.array([r.group("video") for r in rows])
    feats = all_features(rows, manifest, views, Path(args.cache))
    # each count histogram as its square root (Hellinger), so rare bins are not drowned
    x_by = {v: np.sqrt(np.clip(feats[:, i], 0, None)) for i, v in enumerate(views)}
    clip = None
    if args.with_clip:
        from facetrust.detect.experts import ClipExpert
        from facetrust.train.features import load_features

        table = load_features(Path(args.features))
        clip = table.get(ClipExpert(pool="cls+mean", l2=True), "clean", table.rows(rows))
    results: dict = {"views": views, "dims": int(feats.shape[-1])}

    def colour_logits(v, train, test):
        head, info = fit_linear_head(x_by[v][train], y[train], src[train])
        return head(x_by[v][test]), info["C"]

    def clip_logits(train, test):
        head, _ = fit_linear_head(clip[train], y[train], src[train], (0.003,))
        return head(clip[test])

    variants = [f"colour-{v}" for v in views] + (
        ["clip"] + [f"clip+colour-{v}" for v in views] if clip is not None else []
    )
    splits = {f: (np.flatnonzero(~np.isin(src, h)), np.flatnonzero(np.isin(src, h)))
              for f, h in FOLDS.items()}  # fmt: skip
    if args.in_dist:
        from facetrust.train.build import select_rows
        from facetrust.train.config import load_config

        row_of = {r.crop: i for i, r in enumerate(rows)}
        chosen = select_rows(load_config(args.in_dist))
        splits["in_dist"] = tuple(
            np.array([row_of[r.crop] for r in chosen[s]]) for s in ("train", "val")
        )
    for v in variants:
        results[v] = {}
    for name, (train, test) in splits.items():
        c_logit = clip_logits(train, test) if clip is not None else None
        for v in variants:
            if v == "clip":
                z, c = c_logit, 0.003
            else:
                view = v.split("colour-")[1]
                z, c = colour_logits(view, train, test)
                if v.startswith("clip+"):
                    z = (z + c_logit) / 2
            p = sigmoid(z)
            if name == "in_dist":
                f = {"auc": round(roc_auc(y[test], p), 4), "n": len(test), "C": c}
                f["real_vs_real"] = real_vs_real(p, src[test], y[test]).figures
                print(f"{v} in-dist: AUC {f['auc']:.4f} worst real-vs-real "
                      f"{f['real_vs_real']['worst']}", flush=True)  # fmt: skip
            else:
                f = fold_figures(y[test], p, videos[test]) | {"C": c}
                print(f"{v} {name}: AUC {f['auc']:.3f} {f['auc_ci']} ECE {f['ece']:.3f} C {c}",
                      flush=True)  # fmt: skip
            results[v][name] = f
    for v in variants:
        aucs = [results[v][f]["auc"] for f in FOLDS]
        results[v]["mean"], results[v]["worst"] = round(float(np.mean(aucs)), 4), min(aucs)
        print(f"{v}: mean {results[v]['mean']:.3f} worst {results[v]['worst']:.3f}", flush=True)
    for v in views:
        finding = source_predictability(x_by[v], src, videos, labels=y, name=f"colour-{v}")
        results[f"colour-{v}"]["source_predictability"] = finding.figures
        print(f"colour-{v} source predictability: {finding.figures}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
