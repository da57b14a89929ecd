"""Is a face's CLIP representation less stable under small noise when the face is generated?

  python benchmarks/noise_robustness.py [--manifest data/shared.jsonl] [--sigmas 0.05 0.1]
                                        [--reencode] [--clip] [--out docs/noise-robustness.json]

RIGID (He et al., 2024) detects generated images without training: a frozen encoder's
embedding of a real photo moves less when a little Gaussian noise is added to its input than
that of a generated image (cosine similarity of the two embeddings; lower = fake). Here, on
benchmarks/shortcuts.py's stratified sample (250 faces per source and label), with the CLIP
ViT-B/16 tower of the CLIP expert: noise of standard deviation ``sigma`` in CLIP's normalised
input space, and the cosine similarity between the clean and the noisy class token and mean
patch token of every block (24 numbers a face). Scored these ways under the leave-one-kind-out
folds of benchmarks/loso.py:

  rigid      training-free: 1 - the last block's class-token similarity (RIGID's score)
  mean       training-free: 1 - the mean of the 24 similarities
  head       a logistic regression on the 24 similarities, fitted on the other kinds
  +clip      that head's logit averaged (each divided by its spread on the training rows) with
             the shipped recipe's CLIP head (class + mean tokens of 12 blocks, L2, C = 0.003)
             refitted on the same training rows; the CLIP head alone beside it
  move       the CLIP head's recipe on how each face's tokens moved (clean minus perturbed,
             both L2 per block, 18,432 numbers): a direction of fragility, not only its size

``--reencode`` adds one more perturbation instead of noise: the re-encoded copy of each crop
(the training recipe's random downscale + JPEG + upscale) that pseudo_loso.py caches beside the
clean tokens, a test of whether a generated face is more fragile under compression. With
``--clip`` the CLIP head, the average and ``move`` are fitted too. Also printed: the real-vs-real
control of each training-free score (AUC between the reals of every pair of sources; near 0.5
if it does not score the source). The clean tokens are the ones
benchmarks/pseudo_loso.py cached (data/pseudo-loso-raw-crops.npz, made on first use by it);
the noisy ones are cached per sigma in data/noise-robust-raw-s<sigma>.npz (~11 min per sigma
on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from facetrust.config import apply_threads
from facetrust.data.manifest import read_crop, read_manifest
from facetrust.detect.calibration import sigmoid
from facetrust.train.fusion import fit_linear_head
from facetrust.train.metrics import roc_auc
from facetrust.train.shortcuts import real_vs_real

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import FOLDS  # noqa: E402
from pseudo_loso import sample_tokens, view  # noqa: E402
from shortcuts import sample  # noqa: E402


def noisy_tokens(manifest: Path, rows, sigma: float, seed: int = 0) -> np.ndarray:
    """Raw class + mean patch tokens ``(N, 12, 1536)`` of each crop with Gaussian noise of
    ``sigma`` (CLIP's normalised units) added to its CLIP input, the same path as the cached
    clean tokens otherwise (:func:`clip_cls_features`)."""
    import torch

    from facetrust.detect.experts.clip import ALL_BLOCKS, clip_pixels
    from facetrust.models.clip import CLIP_MEAN, CLIP_STD, cpu_bf16, shared_clip_vit_b16
    from facetrust.models.preprocess import to_tensor

    tower = shared_clip_vit_b16()
    gen = torch.Generator().manual_seed(seed)
    out = []
    t0 = time.time()
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=cpu_bf16()):
        for b in range(0, len(rows), 16):
            crops = [read_crop(manifest, r.crop) for r in rows[b : b + 16]]
            x = to_tensor(clip_pixels(crops), CLIP_MEAN, CLIP_STD)
            x = x + sigma * torch.randn(x.shape, generator=gen)
            out.append(tower.block_tokens(x, ALL_BLOCKS, "cls+mean").float().numpy())
            if b % 320 == 0:
                print(f"  noisy tokens {b + len(crops)}/{len(rows)} ({time.time() - t0:.0f} s)")
    return np.concatenate(out).astype(np.float16)


def similarities(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, 24)``: cosine similarity of the class token, then of the mean patch token, per
    block, between two ``(N, 12, 1536)`` token arrays."""

    def cos(u, v):
        u, v = u.astype(np.float64), v.astype(np.float64)
        return np.sum(u * v, -1) / np.maximum(
            np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1), 1e-12
        )

    return np.concatenate([cos(a[..., :768], b[..., :768]), cos(a[..., 768:], b[..., 768:])], 1)


def head_logits(x, y, groups, test_x, c: float) -> tuple[np.ndarray, float]:
    """Logits of ``test_x`` under a standardised logistic head fitted with a fixed C, and the
    spread of the head's logits on its training rows."""
    head, _ = fit_linear_head(x, y, groups, (c,))
    return head(test_x), float(np.std(head(x)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--manifest", default="data/shared.jsonl")
    ap.add_argument("--per-class", type=int, default=250)
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.05])
    ap.add_argument("--reencode", action="store_true", help="also the re-encoded copies")
    ap.add_argument("--clip", action="store_true", help="also the CLIP head and the average")
    ap.add_argument("--out", default="docs/noise-robustness.json")
    args = ap.parse_args()
    apply_threads(2)
    manifest = Path(args.manifest)
    rows = sample(read_manifest(manifest), args.per_class, 0)
    keys = [r.crop for r in rows]
    clean, reencoded = sample_tokens(keys)
    perturbed = {"re-encode": reencoded} if args.reencode else {}
    y = np.array([int(r.label == "fake") for r in rows])
    src = np.array([r.source for r in rows])
    report: dict = {"faces": len(rows), "perturbations": {}}
    xclip = view(clean, "cls+mean", True) if args.clip else None
    for sigma in args.sigmas:
        cache, tokens = Path(f"data/noise-robust-raw-s{sigma:g}.npz"), None
        if cache.is_file():
            with np.load(cache) as z:
                if list(z["keys"]) == keys:
                    tokens = z["x"]
        if tokens is None:
            tokens = noisy_tokens(manifest, rows, sigma)
            np.savez(cache, keys=np.array(keys), x=tokens)
        perturbed[f"noise {sigma:g}"] = tokens
    for what, tokens in perturbed.items():
        sim = similarities(clean, tokens)
        scores = {"rigid": 1 - sim[:, 11], "mean": 1 - sim.mean(1)}
        res: dict = {"folds": {}, "all": {}, "real_vs_real": {}}
        for name, s in scores.items():
            res["all"][name] = roc_auc(y, s)
            rvr = real_vs_real(s, src, y)
            res["real_vs_real"][name] = rvr.figures
        for fold, held in FOLDS.items():
            test = np.isin(src, held)
            tr = ~test
            row = {name: roc_auc(y[test], s[test]) for name, s in scores.items()}
            z, spread = head_logits(sim[tr], y[tr], src[tr], sim[test], 1.0)
            row["head"] = roc_auc(y[test], sigmoid(z))
            if xclip is not None:
                zc, spread_c = head_logits(xclip[tr], y[tr], src[tr], xclip[test], 0.003)
                row["clip"] = roc_auc(y[test], sigmoid(zc))
                row["+clip"] = roc_auc(y[test], sigmoid(z / spread + zc / spread_c))
                xd = xclip - view(tokens, "cls+mean", True)  # the direction each face moved in
                zd, _ = head_logits(xd[tr], y[tr], src[tr], xd[test], 0.003)
                row["move"] = roc_auc(y[test], sigmoid(zd))
            res["folds"][fold] = row
        names = list(next(iter(res["folds"].values())))
        res["mean"] = {n: float(np.mean([f[n] for f in res["folds"].values()])) for n in names}
        res["worst"] = {n: float(np.min([f[n] for f in res["folds"].values()])) for n in names}
        report["perturbations"][what] = res
        print(
            f"\n{what}: mean similarity real {sim[y == 0].mean():.4f}, "
            f"fake {sim[y == 1].mean():.4f}; AUC on every face "
            + ", ".join(f"{k} {v:.3f}" for k, v in res["all"].items())
        )
        print("| fold | " + " | ".join(names) + " |")
        for fold, row in res["folds"].items():
            print(f"| {fold} | " + " | ".join(f"{row[n]:.3f}" for n in names) + " |")
        for agg in ("mean", "worst"):
            print(f"| {agg} | " + " | ".join(f"{res[agg][n]:.3f}" for n in names) + " |")
        for name, rvr in res["real_vs_real"].items():
            pairs = rvr["pairs"]
            far = max(pairs, key=lambda k: abs(pairs[k] - 0.5))
            out = sum(abs(a - 0.5) > 0.1 for a in pairs.values())
            print(
                f"real vs real ({name}): {out} of {len(pairs)} pairs outside 0.40-0.60, "
                f"farthest {far} {pairs[far]:.3f}"
            )
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
