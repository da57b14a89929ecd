"""The CLIP expert alone under leave-one-kind-out: which CLS-token layer sets transfer?

For each fold of ``benchmarks/loso.py`` (face swap, composite, GAN, diffusion) a linear probe
on the cached CLIP features (clean view) is fitted on up to 6,000 faces of the other sources,
by ``facetrust fuse``'s own head fitting (standardised L2 logistic regression, C picked by
source-grouped CV), and scored by AUC on the held-out sources. Needs the feature cache that
``facetrust fuse`` writes. Usage:

  python benchmarks/clip_probe_loso.py [LAYERS ...]     # e.g. 6,9,12 4,8,12 12
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from facetrust.data.manifest import read_manifest
from facetrust.detect.experts import ClipExpert
from facetrust.train.features import load_features
from facetrust.train.fusion import fit_linear_head, parse_clip_layers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import FOLDS  # noqa: E402

MANIFEST = "data/shared.jsonl"
FEATURES = Path("data/features-shared")


def main() -> None:
    sets = [parse_clip_layers(a) for a in sys.argv[1:]] or [(6, 9, 12)]
    rows = [r for r in read_manifest(MANIFEST) if r.crop]
    table = load_features(FEATURES)
    idx = table.rows(rows)
    y = np.array([r.y for r in rows])
    src = np.array([r.source for r in rows])
    for layers in sets:
        t0 = time.time()
        x = table.get(ClipExpert(layers=layers), "clean", idx)
        res = {}
        for fold, held in FOLDS.items():
            test = np.isin(src, held)
            train = np.flatnonzero(~test)
            train = np.random.default_rng(0).choice(train, min(6000, len(train)), replace=False)
            head, _ = fit_linear_head(x[train], y[train], src[train])
            res[fold] = round(float(roc_auc_score(y[test], head(x[test]))), 3)
        mean = np.mean(list(res.values()))
        print(f"layers {layers}: {res} mean {mean:.3f} ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
