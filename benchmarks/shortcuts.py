"""Shortcut diagnostics of a detector on a prepared data set (issue: generalisation).

  python benchmarks/shortcuts.py [--manifest data/shared.jsonl] [--model facetrust-default]
                                 [--per-class 250] [--out docs/shortcuts-<model>.json]

A stratified sample (up to ``--per-class`` faces of each source and label, seeded) is scored
through the model's scoring core. Printed, and written as JSON:

(a) how well each expert's features (the CNN's pre-logit features, the CLIP tokens the model
    reads, the frequency spectrum) predict the source: balanced accuracy of an 8-way grouped
    CV, on all faces and on reals alone (chance 1/sources);
(b) real-vs-real control: the model's AUC between the reals of every pair of sources
    (about 0.5 when it scores fakes and not sources);
(c) leave-one-kind-out per fold for each expert's features: a linear head (facetrust fuse's
    grouped-CV logistic regression) fitted on the other kinds, AUC and ECE on the held-out
    kind. The fused model's own folds need fold CNNs: benchmarks/loso.py.

Features are cached in data/shortcuts-<model>.npz, reused for the same sample and the same
checkpoint file (its hash is stored with them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from facetrust.cache import file_sha256
from facetrust.config import apply_threads
from facetrust.data.manifest import read_crop, read_manifest
from facetrust.detect.experts import ClipExpert, FrequencyExpert
from facetrust.detect.scoring import FaceScorer
from facetrust.models.zoo import resolve_model
from facetrust.train.fusion import fit_linear_head
from facetrust.train.shortcuts import held_out_folds, real_vs_real, source_predictability

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import FOLDS  # noqa: E402


def sample(rows, per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    by = {}
    for r in rows:
        if r.crop:
            by.setdefault((r.source, r.label), []).append(r)
    out = []
    for key in sorted(by):
        group = by[key]
        idx = rng.choice(len(group), min(per_class, len(group)), replace=False)
        out += [group[i] for i in sorted(idx)]
    return out


def features(
    scorer: FaceScorer, rows, manifest: Path, cache: Path, model_id: str = ""
) -> dict[str, np.ndarray]:
    """Each expert's features and the model's probability of ``rows``, cached in ``cache`` and
    reused only for the same crops and the same checkpoint (``model_id``, its file's hash): a
    retrained model under the same name recomputes them."""
    keys = [r.crop for r in rows]
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            same_model = "model_id" in z.files and str(z["model_id"]) == model_id
            if list(z["keys"]) == keys and same_model:
                return {k: z[k] for k in z.files if k not in ("keys", "model_id")}
    experts = scorer.experts.experts if scorer.experts else {}
    clip = experts.get("clip") or ClipExpert()
    freq = experts.get("frequency") or FrequencyExpert()
    parts: dict[str, list] = {"cnn": [], "clip": [], "frequency": [], "prob": []}
    t0 = time.time()
    for i in range(0, len(rows), 64):
        crops = [read_crop(manifest, r.crop) for r in rows[i : i + 64]]
        feats = {"clip": clip.features(crops), "frequency": freq.features(crops)}
        parts["cnn"].append(scorer.cnn_embeddings(crops))
        parts["clip"].append(feats["clip"])
        parts["frequency"].append(feats["frequency"])
        # the model's probability from the same features (each expert's head, the stack)
        cols = [scorer.cnn_logits(crops)]
        cols += [experts[n].head(feats[n]) for n in scorer.inputs[1:]]
        parts["prob"].append(scorer.from_columns(np.stack(cols, 1)).probability)
        print(f"  features {i + len(crops)}/{len(rows)} ({time.time() - t0:.0f} s)", flush=True)
    out = {k: np.concatenate(v) for k, v in parts.items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, keys=np.array(keys), model_id=np.array(model_id), **out)
    return out


def fit_head(x, y, groups):
    head, _ = fit_linear_head(x, y, groups)
    return lambda z: 1.0 / (1.0 + np.exp(-head(z)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--manifest", default="data/shared.jsonl")
    ap.add_argument("--model", default="facetrust-default")
    ap.add_argument("--per-class", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    apply_threads(args.threads)
    manifest = Path(args.manifest)
    rows = sample(read_manifest(manifest), args.per_class, args.seed)
    path = resolve_model(args.model)
    scorer = FaceScorer.from_checkpoint(path)
    name = path.stem
    print(f"{name}: {len(rows)} faces from {len({r.source for r in rows})} sources")
    model_id = file_sha256(path)
    feats = features(scorer, rows, manifest, Path(f"data/shortcuts-{name}.npz"), model_id)
    y = np.array([r.y for r in rows])
    src = np.array([r.source for r in rows])
    groups = np.array([r.video_id or r.path for r in rows])

    report: dict = {"model": name, "n": len(rows), "per_class": args.per_class}
    flags: list[str] = []
    print("\n(a) source predictability (balanced accuracy; chance in brackets)")
    for ex in ("cnn", "clip", "frequency"):
        f = source_predictability(feats[ex], src, groups, labels=y, name=f"{ex} features")
        report.setdefault("source_predictability", {})[ex] = f.figures
        flags += f.flags
        cells = [
            f"{k} {v['balanced_accuracy']:.3f} ({v['chance']:.3f})" for k, v in f.figures.items()
        ]
        print(f"  {ex:10s} " + "   ".join(cells))

    print("\n(b) real-vs-real control: the model's AUC between reals of two sources")
    rvr = real_vs_real(feats["prob"], src, y)
    report["real_vs_real"] = rvr.figures
    flags += rvr.flags
    for pair, auc in sorted(rvr.figures["pairs"].items(), key=lambda kv: -abs(kv[1] - 0.5)):
        print(f"  {pair:28s} {auc:.3f}")

    print("\n(c) leave-one-kind-out, a linear head on each expert's features")
    for ex in ("cnn", "clip", "frequency"):
        f = held_out_folds(feats[ex], y, src, FOLDS, fit_head, name=f"{ex} head")
        report.setdefault("held_out", {})[ex] = f.figures
        flags += f.flags
        cells = [f"{k} {v['auc']:.3f}/{v['ece']:.3f}" for k, v in f.figures["folds"].items()]
        print(f"  {ex:10s} " + "  ".join(cells) + f"  mean AUC {f.figures['mean_auc']}")
    print("  (AUC/ECE per fold; the CNN features here come from a model that saw every kind)")

    report["flags"] = flags
    print("\nflags:")
    for line in flags or ["none"]:
        print(f"  - {line}")
    out = Path(args.out or f"docs/shortcuts-{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
