"""Does the in-distribution AUC lean on people seen in training?

  uv run python benchmarks/identity_leak.py [--config configs/long.yaml] \
      [--model facetrust-default] [--out JSON]

The val split of ``--config`` keeps every video (every still image) on one side, but the same
person can appear in several videos (DFDC's paid actors) or several photos (a film actor in
imfdb), so a val face may show someone the detector trained on. This benchmark embeds every
train and val face with MobileFaceNet (the recognizer that ships for protection, L2), finds for
each val face the most similar train face of its own source, and calls the person *seen* when
that similarity is above the level that faces of *other* sources (other people by construction)
reach only for 5 % of val faces, with as many train faces drawn from the other sources as the
own source has (the null is approximate: the other sources' people differ in age, ethnicity
and image quality). Then ``--model`` scores every val face (the scoring core on the prepared
crops) and each source's AUC is given on all its val faces and on the unseen people alone (its
fakes and reals both restricted), with 95 % intervals (whole videos resampled), and the whole
val split's AUC without the seen people. Two checks of what "seen" means: the seen faces split
by whether their nearest train face has their own label or the other one (a detector that
reads *who* it is gains on the first and loses on the second), and the median sharpness
(variance of the Laplacian) of seen and unseen faces (a recognizer puts blurred or dark faces
close together, and such faces are also harder to judge), the same splits on each source's
sharper half alone, and how the faces of each source join into groups above the threshold
(one giant group: the similarity chains different people).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from facetrust.config import apply_threads
from facetrust.data.manifest import read_crop
from facetrust.train.metrics import auc_interval, roc_auc

FALSE_MATCH = 0.05  # the share of other-source val faces called "seen"


def cached_by_crops(rows, cache: Path, name: str, compute) -> np.ndarray:
    """``compute()``'s array for ``rows`` (one row each), kept in the .npz ``cache`` under
    ``name`` beside the rows' crop keys, and read back while the keys are the same."""
    keys = np.array([r.crop for r in rows])
    if cache.is_file():
        with np.load(cache) as z:
            if np.array_equal(z["keys"], keys):
                return z[name]
    out = compute()
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, keys=keys, **{name: out})
    return out


def embed(rows, manifest: Path, cache: Path) -> np.ndarray:
    """MobileFaceNet embeddings of ``rows`` (L2, float32), cached by crop keys."""
    return cached_by_crops(rows, cache, "emb", lambda: _embed(rows, manifest))


def _embed(rows, manifest: Path) -> np.ndarray:
    import torch

    from facetrust.protect.encoders import build_encoder

    enc = build_encoder("mobilefacenet")
    out, t0 = [], time.time()
    for i in range(0, len(rows), 128):
        crops = np.stack([read_crop(manifest, r.crop) for r in rows[i : i + 128]])
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            out.append(enc(x).numpy().astype(np.float32))
    emb = np.concatenate(out)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    print(f"embedded {len(rows)} faces in {time.time() - t0:.0f} s", flush=True)
    return emb


def nearest(a: np.ndarray, b: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``a``, its largest cosine to a row of ``b`` (both L2) and that row."""
    if not len(b):
        return np.full(len(a), -1.0), np.zeros(len(a), np.int64)
    sims = [a[i : i + chunk] @ b.T for i in range(0, len(a), chunk)]
    return np.concatenate([m.max(1) for m in sims]), np.concatenate([m.argmax(1) for m in sims])


def sharpness(crop: np.ndarray) -> float:
    """Variance of the grey crop's Laplacian (blur and darkness lower it)."""
    import cv2

    return float(cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def seen_threshold(e_val, src_val, e_train, src_train, rng) -> tuple[float, dict]:
    """The similarity that val faces reach to other sources' train faces (as many as their own
    source has) for only ``FALSE_MATCH`` of them."""
    null = []
    for s in np.unique(src_val):
        own = int(np.sum(src_train == s))
        others = np.flatnonzero(src_train != s)
        if not own or not len(others):
            continue
        pick = rng.choice(others, min(own, len(others)), replace=False)
        null.append(nearest(e_val[src_val == s], e_train[pick])[0])
    null = np.concatenate(null)
    t = float(np.quantile(null, 1 - FALSE_MATCH))
    return t, {"threshold": round(t, 4), "null_median": round(float(np.median(null)), 4)}


def person_groups(emb, src, t: float) -> dict:
    """Per source, the faces (train and val) joined into groups wherever two are more alike
    than ``t`` (connected components): how many groups of two or more, and the largest. One
    giant group means the similarity chains different people (through blur, say), so it cannot
    give person clusters to balance or split on."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    out = {}
    for s in np.unique(src):
        e = emb[src == s]
        adj = csr_matrix(e @ e.T > t)
        sizes = np.bincount(connected_components(adj, directed=False)[1])
        out[str(s)] = {
            "faces": len(e),
            "groups": int((sizes > 1).sum()),
            "largest": int(sizes.max()),
        }
    return out


def figures(y, p, videos) -> dict:
    out = {"n": int(len(y)), "fakes": int(y.sum())}
    if len(np.unique(y)) == 2 and min(y.sum(), len(y) - y.sum()) >= 5:
        ci = auc_interval(y, p, clusters=videos)
        out["auc"] = round(roc_auc(y, p), 4)
        out["auc_ci"] = None if ci is None else [round(c, 4) for c in ci]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", default="configs/long.yaml")
    ap.add_argument("--model", default="facetrust-default")
    ap.add_argument("--cache", default="data/identity-leak.npz")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    apply_threads(2)
    from facetrust.detect.scoring import load_scorer
    from facetrust.models.zoo import resolve_model
    from facetrust.train.build import select_rows
    from facetrust.train.config import load_config

    cfg = load_config(args.config)
    manifest = Path(cfg.data.train_manifest)
    splits = select_rows(cfg)
    train, val = splits["train"], splits["val"]
    emb = embed(train + val, manifest, Path(args.cache))
    e_tr, e_va = emb[: len(train)], emb[len(train) :]
    s_tr = np.array([r.source for r in train])
    s_va = np.array([r.source for r in val])
    y = np.array([r.y for r in val])
    videos = np.array([r.group("video") for r in val])
    y_tr = np.array([r.y for r in train])
    sim, agree = np.zeros(len(val)), np.zeros(len(val), bool)
    for s in np.unique(s_va):
        own = np.flatnonzero(s_tr == s)
        sim[s_va == s], j = nearest(e_va[s_va == s], e_tr[own])
        agree[s_va == s] = y_tr[own[j]] == y[s_va == s]  # the nearest train face's label
    t, null = seen_threshold(e_va, s_va, e_tr, s_tr, np.random.default_rng(0))
    seen = sim > t
    groups = person_groups(np.concatenate([e_tr, e_va]), np.concatenate([s_tr, s_va]), t)
    print(f"seen-person threshold {t:.3f} (other sources' null median {null['null_median']})")
    _, _, scorer = load_scorer(resolve_model(args.model), threads=2)
    p, sharp, t0 = [], [], time.time()
    for i in range(0, len(val), 64):
        crops = [read_crop(manifest, r.crop) for r in val[i : i + 64]]
        p.append(scorer(crops).probability)
        sharp += [sharpness(c) for c in crops]
    p, sharp = np.concatenate(p), np.array(sharp)
    print(f"scored {len(val)} val faces in {time.time() - t0:.0f} s", flush=True)
    res: dict = {"config": args.config, "model": args.model, "null": null, "sources": {}}
    res["person_groups"] = groups
    print(f"faces joined above the threshold, per source: {groups}", flush=True)
    res["all"] = figures(y, p, videos)
    res["unseen_people"] = figures(y[~seen], p[~seen], videos[~seen])
    print(f"val: AUC {res['all']['auc']:.4f} on {len(y)}; without seen people "
          f"{res['unseen_people']['auc']:.4f} on {int((~seen).sum())}")  # fmt: skip
    for s in np.unique(s_va):
        k = s_va == s
        entry = {
            "seen_share": {
                name: round(float(seen[k & (y == c)].mean()), 3) if (k & (y == c)).any() else None
                for name, c in (("real", 0), ("fake", 1))
            },
            "all": figures(y[k], p[k], videos[k]),
            "unseen_people": figures(y[k & ~seen], p[k & ~seen], videos[k & ~seen]),
            "seen_people": figures(y[k & seen], p[k & seen], videos[k & seen]),
            # seen people whose nearest train face has the val face's label, or the other one:
            # a head that reads who it is gains on the first and loses on the second
            "seen_same_label": figures(*(a[k & seen & agree] for a in (y, p, videos))),
            "seen_other_label": figures(*(a[k & seen & ~agree] for a in (y, p, videos))),
            "median_sharpness": {
                "seen": round(float(np.median(sharp[k & seen])), 1) if (k & seen).any() else None,
                "unseen": round(float(np.median(sharp[k & ~seen])), 1),
            },
        }
        # the same split on the source's sharper half alone, where blur cannot group faces
        h = k & (sharp >= np.median(sharp[k]))
        entry["sharper_half"] = {
            "unseen_people": figures(y[h & ~seen], p[h & ~seen], videos[h & ~seen]),
            "seen_people": figures(y[h & seen], p[h & seen], videos[h & seen]),
            "seen_same_label": figures(*(a[h & seen & agree] for a in (y, p, videos))),
            "seen_other_label": figures(*(a[h & seen & ~agree] for a in (y, p, videos))),
        }
        res["sources"][str(s)] = entry
        print(f"{s}: seen share {entry['seen_share']}; AUC all {entry['all'].get('auc')} "
              f"unseen {entry['unseen_people'].get('auc')} ({entry['unseen_people']['n']}) "
              f"seen {entry['seen_people'].get('auc')} ({entry['seen_people']['n']}): nearest "
              f"train face of the same label {entry['seen_same_label']}, of the other "
              f"{entry['seen_other_label']}; median sharpness {entry['median_sharpness']}; "
              f"sharper half {entry['sharper_half']}", flush=True)  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
