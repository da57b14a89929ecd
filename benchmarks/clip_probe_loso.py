"""The CLIP expert alone under leave-one-kind-out: which CLS-token layer sets transfer?

For each fold of ``benchmarks/loso.py`` (face swap, composite, GAN, diffusion) a linear probe
on the cached CLIP features (clean view) is fitted on up to 6,000 faces of the other sources,
its C picked by source-grouped 4-fold CV as ``facetrust fuse`` picks it, and scored by AUC on
the held-out sources. Needs the feature cache that ``facetrust fuse`` writes. Usage:

  python benchmarks/clip_probe_loso.py [LAYERS ...]     # e.g. 6,9,12 4,8,12 12
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold

from facetrust.data.manifest import read_manifest
from facetrust.train.features import load_features

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import FOLDS  # noqa: E402

MANIFEST = "data/shared.jsonl"
FEATURES = Path("data/features-shared")
C_GRID = (0.003, 0.01, 0.03, 0.1)


def grouped_cv_auc(z: np.ndarray, y: np.ndarray, groups: np.ndarray, c: float) -> float:
    """Mean held-out AUC over the sources that have both classes."""
    pred = np.zeros(len(y))
    for a, b in GroupKFold(4).split(z, y, groups):
        pred[b] = LogisticRegression(C=c, max_iter=500).fit(z[a], y[a]).decision_function(z[b])
    two = [g for g in np.unique(groups) if len(np.unique(y[groups == g])) == 2]
    return float(np.mean([roc_auc_score(y[groups == g], pred[groups == g]) for g in two]))


def main() -> None:
    sets = [tuple(int(v) for v in a.split(",")) for a in sys.argv[1:]] or [(6, 9, 12)]
    rows = [r for r in read_manifest(MANIFEST) if r.crop]
    table = load_features(FEATURES)
    idx = table.rows(rows)
    y = np.array([r.y for r in rows])
    src = np.array([r.source for r in rows])
    for layers in sets:
        t0 = time.time()
        x = table.clip("clean", idx, layers).astype(np.float32)
        res = {}
        for fold, held in FOLDS.items():
            test = np.isin(src, held)
            train = np.flatnonzero(~test)
            train = np.random.default_rng(0).choice(train, min(6000, len(train)), replace=False)
            mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
            z = (x - mu) / sd
            zt, yt, gt = z[train], y[train], src[train]
            best = max(C_GRID, key=lambda c: grouped_cv_auc(zt, yt, gt, c))
            head = LogisticRegression(C=best, max_iter=500).fit(zt, yt)
            res[fold] = round(float(roc_auc_score(y[test], head.decision_function(z[test]))), 3)
        mean = np.mean(list(res.values()))
        print(f"layers {layers}: {res} mean {mean:.3f} ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
