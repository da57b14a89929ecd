"""INT8 dynamic quantisation of an ONNX export: AUC, probability change, speed on val faces.

The validation faces are the model's own ``val`` split, rebuilt as training built it
(``group_split`` by video, 80/10/10, seed 0, ``configs/long.yaml``) from the prepared manifest
``data/shared.jsonl`` (``facetrust prepare ../shared/data/manifest.jsonl -o data/shared.jsonl``);
a stratified sample of ``--faces`` of them (seed 0) is scored by the float32 export and by the
``--int8`` one through the same :class:`~facetrust.detect.onnx_runtime.OnnxFaceScorer`.

    python benchmarks/onnx_int8.py                          # facetrust-default, 300 faces
    python benchmarks/onnx_int8.py --model facetrust-fast --faces 1000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def val_rows(manifest: Path, n: int):
    from facetrust.data.manifest import read_manifest
    from facetrust.data.splits import group_split

    rows = [r for r in read_manifest(manifest) if r.crop]
    parts = group_split(rows, by="video", fractions=(0.8, 0.1, 0.1),
                        names=("train", "val", "calib"), seed=0)  # fmt: skip
    val = parts["val"]
    rng = np.random.default_rng(0)
    picked = []
    for label in ("real", "fake"):  # stratified: the val split's label mix
        idx = [i for i, r in enumerate(val) if r.label == label]
        k = round(n * len(idx) / len(val))
        picked += list(rng.choice(idx, size=min(k, len(idx)), replace=False))
    return val, [val[i] for i in sorted(picked)]


def main() -> None:
    from sklearn.metrics import roc_auc_score

    from facetrust.data.manifest import read_crop
    from facetrust.detect.onnx_export import export_onnx
    from facetrust.detect.onnx_runtime import OnnxFaceScorer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="facetrust-default")
    ap.add_argument("--manifest", type=Path, default=ROOT / "data" / "shared.jsonl")
    ap.add_argument("--faces", type=int, default=300)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--per-channel", action="store_true", help="int8 weights per channel")
    args = ap.parse_args()

    val, rows = val_rows(args.manifest, args.faces)
    y = np.array([r.label == "fake" for r in rows])
    crops = [read_crop(args.manifest, r.crop) for r in rows]
    print(f"{args.model}: {len(rows)} of {len(val)} val faces ({int(y.sum())} fake)")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for int8 in (False, True):
            path = export_onnx(args.model, Path(tmp) / f"m{int(int8)}.onnx", int8=int8,
                               per_channel=args.per_channel)  # fmt: skip
            size = path.stat().st_size / 1e6
            scorer = OnnxFaceScorer(path, threads=args.threads)
            t0 = time.process_time()
            p = scorer(crops).probability
            cpu = (time.process_time() - t0) / len(crops)
            out[int8] = p
            print(f"  {'int8' if int8 else 'fp32':5s} {size:7.1f} MB  AUC {roc_auc_score(y, p):.4f}"
                  f"  CPU {cpu * 1000:6.1f} ms/face", flush=True)  # fmt: skip
    d = np.abs(out[True] - out[False])
    auc = roc_auc_score(y, out[True]) - roc_auc_score(y, out[False])
    print(f"  int8 - fp32: AUC {auc:+.4f}; |p change| median {np.median(d):.4f}, max {d.max():.4f}")


if __name__ == "__main__":
    main()
