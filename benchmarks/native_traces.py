"""Do pixel-level traces on the *native* pixels carry over to kinds of fake not seen?

  python benchmarks/native_traces.py [--manifest data/shared.jsonl] [--c 0.01] [--twins]
                                     [--out docs/native-traces.json]

NPR (Tan et al., CVPR 2024) and co-occurrence detectors (Nataraj et al. 2019) read how
neighbouring pixels relate: the traces generators' up-sampling leaves. Session 16 tried NPR on
the aligned 224 px crops (rotated and resized, which blurs that grid); here the features come
from each image file as stored, no resize, no rotation:

  spam    second-order SPAM (Pevny et al. 2010): the luminance's differences to the next pixel
          in 8 directions, truncated to [-3, 3], and the co-occurrence of three consecutive
          ones (7^3 bins), averaged over the 4 straight and the 4 diagonal directions (686)
  period  the mean absolute horizontal (vertical) difference at each column (row) position
          mod 8 over its mean (16): a 2x up-sampling shows at mod 2, the JPEG grid at mod 8

For each leave-one-kind-out fold of benchmarks/loso.py, facetrust fuse's standardised logistic
head (fixed ``--c``) is fitted on the other kinds' images and scored on the held-out kind (AUC
with its 95 % bootstrap interval over videos, ECE; the GAN fold also per fake source).
``--twins`` adds, as fakes, one twin of every real of the other kinds made by facetrust's
``trace`` pseudo-fake (``upsample_trace``: downscale 2x or 4x, up-sample by nearest, bilinear,
a noisy transposed convolution or pixel shuffle) on its native pixels and re-encoded as JPEG at
the file's own quality, and also scores a head on the reals and their twins alone. Also:
how well the features predict the source (all images and reals alone, grouped CV), the
within-source AUC by grouped 5-fold CV for the sources that have both classes (does the
feature see the fake at all, when trained on the same kind?), and the real-vs-real AUCs of a
head fitted on every image. Features cached in data/native-traces.npz (12,168 images, 1 min)
and the twins' in data/native-traces-trace.npz (7,080, 1 min); the heads then take ~15 min on
one core, most of it the source classifier. Multi-face images count once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from facetrust.config import apply_threads
from facetrust.data.manifest import read_manifest
from facetrust.detect.calibration import sigmoid
from facetrust.errors import InputError
from facetrust.train.fusion import fit_linear_head
from facetrust.train.metrics import auc_text, roc_auc
from facetrust.train.shortcuts import real_vs_real, source_predictability

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import FOLDS, by_fake_source, fold_figures  # noqa: E402

T = 3  # SPAM truncation
STRAIGHT = [(0, 1), (0, -1), (1, 0), (-1, 0)]
DIAGONAL = [(1, 1), (-1, -1), (1, -1), (-1, 1)]


def luminance(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        g = np.asarray(im.convert("L"), np.float32)
    if min(g.shape) < 8:
        raise InputError(f"{path}: {g.shape[1]}x{g.shape[0]} px is too small for pixel traces")
    return g


def _shift(a: np.ndarray, dy: int, dx: int, k: int) -> np.ndarray:
    """``a`` moved ``k`` steps along (dy, dx), cropped so every shift of one call aligns."""
    h, w = a.shape
    y0, x0 = max(0, -dy * 3) + dy * k, max(0, -dx * 3) + dx * k
    return a[y0 : y0 + h - 3 * abs(dy), x0 : x0 + w - 3 * abs(dx)]


def spam(g: np.ndarray) -> np.ndarray:
    """Second-order SPAM: 343 co-occurrence bins for the straight directions, 343 diagonal."""
    out = []
    for dirs in (STRAIGHT, DIAGONAL):
        hist = np.zeros(343)
        for dy, dx in dirs:
            # d_k = g(p + (k+1)s) - g(p + ks), k = 0, 1, 2, over the same base points p
            d = [
                np.clip(np.rint(_shift(g, dy, dx, k + 1) - _shift(g, dy, dx, k)), -T, T) + T
                for k in range(3)
            ]
            idx = (d[0] * 49 + d[1] * 7 + d[2]).astype(np.int64).ravel()
            hist += np.bincount(idx, minlength=343) / idx.size
        out.append(hist / len(dirs))
    return np.concatenate(out)


def period(g: np.ndarray) -> np.ndarray:
    """Mean |horizontal difference| by column mod 8 and |vertical| by row mod 8, each over
    its mean (16 values; 1 everywhere for a picture without a grid)."""
    dx = np.abs(np.diff(g, axis=1)).mean(axis=0)
    dy = np.abs(np.diff(g, axis=0)).mean(axis=1)
    feats = []
    for d in (dx, dy):
        n = len(d) // 8 * 8
        m = d[:n].reshape(-1, 8).mean(axis=0)
        feats.append(m / max(float(m.mean()), 1e-6))
    return np.concatenate(feats)


def features(g: np.ndarray) -> np.ndarray:
    return np.concatenate([spam(g), period(g)]).astype(np.float32)


def logged(x: np.ndarray) -> np.ndarray:
    """What the heads read: co-occurrence frequencies span decades, so their logarithm."""
    return np.log(x + 1e-4)


def trace_twin(path: str, quality: int | None, seed: int) -> np.ndarray:
    """The image's luminance after facetrust's ``trace`` pseudo-fake on its native pixels,
    re-encoded as JPEG at the file's own quality (the source's one setting) when it was one."""
    import cv2
    from PIL import Image

    from facetrust.data.pseudo.trace import upsample_trace

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    fake, _ = upsample_trace(rgb, seed, factor=2 if min(rgb.shape[:2]) < 16 else None)
    if quality:
        ok, buf = cv2.imencode(".jpg", fake[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise InputError(f"{path}: its trace twin could not be JPEG-encoded")
        fake = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    return np.asarray(Image.fromarray(np.ascontiguousarray(fake)).convert("L"), np.float32)


def cached(cache: Path, paths: list[str], make) -> np.ndarray:
    """Features of ``paths`` (``make(i, path)`` gives one image's luminance), kept in ``cache``."""
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            if list(z["paths"]) == paths:
                return z["x"]
        print(f"{cache} is of other images: recomputing", file=sys.stderr)
    t0, x = time.time(), np.zeros((len(paths), 702), np.float32)
    for i, p in enumerate(paths):
        x[i] = features(make(i, p))
        if (i + 1) % 1000 == 0:
            print(f"  {i + 1}/{len(paths)} images, {time.time() - t0:.0f} s", file=sys.stderr)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, x=x, paths=np.array(paths))
    return x


def image_table(rows):
    """One row per image file: path, label, source, group (video or file), JPEG quality."""
    seen: set[str] = set()
    out = []
    for r in rows:
        if r.path not in seen:
            seen.add(r.path)
            out.append((r.path, r.y, r.source, r.video_id or r.path, r.jpeg_quality))
    return out


def fold_scores(x, y, src, grp, c: float, twins=None, twins_only: bool = False) -> dict:
    """Leave-one-kind-out: a head on the other kinds' images (and, given ``twins`` = (features,
    source of their real), the twins of those kinds' reals as fakes; ``twins_only``: reals and
    twins alone), scored on the held-out kind's images."""
    folds = {}
    for fold, held in FOLDS.items():
        test = np.isin(src, held)
        keep = ~test & (y == 0) if twins_only else ~test
        xs, ys, gs = x[keep], y[keep], src[keep]
        if twins is not None:
            xt, st = twins
            tk = ~np.isin(st, held)
            xs, ys = np.concatenate([xs, xt[tk]]), np.concatenate([ys, np.ones(tk.sum(), int)])
            gs = np.concatenate([gs, st[tk]])
        head, _ = fit_linear_head(xs, ys, gs, (c,))
        p = sigmoid(head(x[test]))
        entry = fold_figures(y[test], p, grp[test])
        print(f"{fold:>10}: {auc_text(entry)} ECE {entry['ece']:.3f}", flush=True)
        split = by_fake_source(y[test], src[test], p)
        if split:
            entry["by_source"] = split
        folds[fold] = entry
    aucs = [v["auc"] for v in folds.values()]
    mean, worst = round(float(np.mean(aucs)), 4), min(aucs)
    print(f"leave-one-kind-out mean {mean:.3f}, worst {worst:.3f}")
    return {"folds": folds, "mean": mean, "worst": worst}


def within_source(x, y, grp, c: float, folds: int = 5) -> float:
    """Out-of-fold AUC of the head by grouped CV inside one source."""
    from sklearn.model_selection import StratifiedGroupKFold

    p = np.zeros(len(y))
    for tr, te in StratifiedGroupKFold(folds, shuffle=True, random_state=0).split(x, y, grp):
        head, _ = fit_linear_head(x[tr], y[tr], grp[tr], (c,))
        p[te] = sigmoid(head(x[te]))
    return round(roc_auc(y, p), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--manifest", default="data/shared.jsonl")
    ap.add_argument("--cache", default="data/native-traces.npz")
    ap.add_argument("--c", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--twins", action="store_true", help="also with trace twins of the reals")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    apply_threads(args.threads)
    try:
        table = image_table(read_manifest(args.manifest))
        paths = [t[0] for t in table]
        x = cached(Path(args.cache), paths, lambda i, p: luminance(p))
        y, src, grp = (np.array([t[k] for t in table]) for k in (1, 2, 3))
        reals = [i for i, t in enumerate(table) if t[1] == 0]
        xt = None
        if args.twins:
            twin_cache = Path(args.cache).with_name(Path(args.cache).stem + "-trace.npz")
            xt = cached(
                twin_cache,
                [paths[i] for i in reals],
                lambda j, p: trace_twin(p, table[reals[j]][4], j),
            )
    except (OSError, InputError) as e:
        sys.exit(f"native_traces: {e}")
    x = logged(x)
    report: dict = {"images": int(len(y)), "c": args.c}

    both = [s for s in sorted(set(src)) if len(set(y[src == s])) == 2]
    report["within_source"] = {
        str(s): within_source(x[src == s], y[src == s], grp[src == s], args.c) for s in both
    }
    print("within-source AUC (grouped 5-fold CV):", report["within_source"])
    print("real fakes of the other kinds:")
    report["real_fakes"] = fold_scores(x, y, src, grp, args.c)
    if xt is not None:
        twins = (logged(xt), src[reals])
        print("+ a trace twin of every real of the other kinds:")
        report["with_twins"] = fold_scores(x, y, src, grp, args.c, twins)
        print("reals and their trace twins only:")
        report["twins_only"] = fold_scores(x, y, src, grp, args.c, twins, twins_only=True)

    head, _ = fit_linear_head(x, y, src, (args.c,))
    rvr = real_vs_real(sigmoid(head(x)), src, y)
    report["real_vs_real"] = rvr.figures
    print(f"real-vs-real: {len(rvr.flags)} of {len(rvr.figures['pairs'])} pairs outside 0.40-0.60")
    report["source"] = source_predictability(x, src, grp, labels=y).figures
    print("source predictability:", report["source"])
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
