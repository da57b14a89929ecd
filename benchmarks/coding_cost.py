"""Zero-shot: is a generated face coded more cheaply than a model of real pixels expects?

  python benchmarks/coding_cost.py [--manifest data/shared.jsonl] [--steps 1500] [--c 0.01]
                                   [--out docs/coding-cost.json]

ZED (Cozzolino et al., ECCV 2024) trains a lossless coder on real images only and scores an
image by how far its actual coding cost (the negative log-likelihood of its pixels, NLL) falls
from the cost the coder itself expects (the entropy H of its own predictions): on the images it
models well the two agree; a generator's pixels are more predictable than the coder expects
(NLL < H). It never sees a fake, so it cannot learn which sources the fakes came from. Here the
coder is a small PixelCNN (masked convolutions, a 256-way softmax per pixel) on the luminance of
the native pixels, trained on the reals of the sources in no leave-one-kind-out fold (imfdb,
webfaces: never held out, never fake), on random 32 px patches (``--steps`` batches of 64, ~12
min on 2 cores). Each image's centre (at most 128 px, native pixels) is coded at two levels, as
stored and 2x2-averaged: NLL, H and their gap Δ = NLL - H in bits per pixel (6 numbers, ~17 min
for the 12,168 images). Reported: the zero-shot score -Δ (its a-priori direction: higher =
cheaper than expected = fake) per fold of benchmarks/loso.py (AUC with its 95 % interval over
videos), within each source that has both classes, and its real-vs-real control (AUC between
the reals of each pair of sources); then, for comparison, a logistic head on the 6 numbers per
fold (fitted on the other kinds' images, ``--c``). Multi-face images count once. The coder and
the numbers are kept in ``--cache`` (data/coding-cost.{pt,npz}).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facetrust.config import apply_threads
from facetrust.data.manifest import read_manifest
from facetrust.train.metrics import auc_text, roc_auc
from facetrust.train.shortcuts import real_vs_real

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loso import FOLDS, by_fake_source, fold_figures  # noqa: E402
from native_traces import fold_scores, image_table, luminance  # noqa: E402

PATCH, CENTRE = 32, 128
NAMES = ["nll0", "h0", "gap0", "nll1", "h1", "gap1"]


class Masked(nn.Conv2d):
    """A convolution that sees only the pixels above and to the left (``first``: not the pixel
    itself either), so the network predicts each pixel from the ones coded before it."""

    def __init__(self, cin: int, cout: int, k: int, first: bool):
        super().__init__(cin, cout, k, padding=k // 2)
        m = torch.ones_like(self.weight)
        c = k // 2
        m[:, :, c, c + (0 if first else 1) :] = 0
        m[:, :, c + 1 :, :] = 0
        self.register_buffer("mask", m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class Coder(nn.Module):
    """A small PixelCNN: logits over the 256 grey levels of every pixel."""

    def __init__(self, width: int = 48, blocks: int = 4):
        super().__init__()
        self.first = Masked(1, width, 7, first=True)
        self.blocks = nn.ModuleList(Masked(width, width, 3, first=False) for _ in range(blocks))
        self.out = nn.Conv2d(width, 256, 1)

    def forward(self, g: torch.Tensor) -> torch.Tensor:  # g: (n, 1, h, w) grey levels 0-255
        h = F.relu(self.first(g / 255.0 - 0.5))
        for b in self.blocks:
            h = h + F.relu(b(h))
        return self.out(h)


def patches(grays: list[np.ndarray], per: int, rng) -> np.ndarray:
    out = []
    for g in grays:
        h, w = g.shape
        for _ in range(per):
            y, x = rng.integers(0, h - PATCH + 1), rng.integers(0, w - PATCH + 1)
            out.append(g[y : y + PATCH, x : x + PATCH])
    return np.stack(out)[:, None]


def train_coder(grays: list[np.ndarray], steps: int, seed: int = 0) -> Coder:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    data = torch.from_numpy(patches([g for g in grays if min(g.shape) >= PATCH], 40, rng))
    coder = Coder()
    opt = torch.optim.Adam(coder.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=0.05)
    t0 = time.time()
    for step in range(steps):
        batch = data[torch.from_numpy(rng.integers(0, len(data), 64))].float()
        loss = F.cross_entropy(coder(batch), batch[:, 0].long())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 250 == 0:
            bits = loss.item() / np.log(2)
            print(f"  step {step + 1}/{steps}: {bits:.3f} bits/pixel, {time.time() - t0:.0f} s")
    return coder.eval()


def centre(g: np.ndarray) -> np.ndarray:
    h, w = g.shape
    y, x = max(0, (h - CENTRE) // 2), max(0, (w - CENTRE) // 2)
    return g[y : y + CENTRE, x : x + CENTRE]


@torch.no_grad()
def costs(coder: Coder, g: np.ndarray) -> list[float]:
    """NLL, H and NLL - H in bits per pixel of the image's centre, as stored and 2x2-averaged
    (the pixels with a full 3-pixel context above and left only)."""
    out = []
    for level in (0, 1):
        if level:
            h, w = g.shape[0] // 2 * 2, g.shape[1] // 2 * 2
            g = np.rint(g[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)))
        c = torch.from_numpy(np.ascontiguousarray(centre(g)))[None, None].float()
        logp = F.log_softmax(coder(c), dim=1)[0, :, 3:, 3:]
        target = c[0, 0, 3:, 3:].long()
        if target.numel() == 0:
            out += [np.nan] * 3
            continue
        nll = -logp.gather(0, target[None])[0].mean().item() / np.log(2)
        ent = -(logp.exp() * logp).sum(0).mean().item() / np.log(2)
        out += [nll, ent, nll - ent]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--manifest", default="data/shared.jsonl")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--c", type=float, default=0.01)
    ap.add_argument("--cache", default="data", help="where the coder and its numbers are kept")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    apply_threads(2)
    table = image_table([r for r in read_manifest(args.manifest) if r.crop])
    paths = [t[0] for t in table]
    y = np.array([t[1] for t in table])
    src = np.array([t[2] for t in table])
    grp = np.array([t[3] for t in table])
    in_fold = np.isin(src, [s for sources in FOLDS.values() for s in sources])
    model_path, cache = (Path(args.cache) / f"coding-cost.{e}" for e in ("pt", "npz"))
    if model_path.exists():
        coder = Coder()
        coder.load_state_dict(torch.load(model_path))
        coder.eval()
    else:
        train = np.flatnonzero(~in_fold & (y == 0))
        print(f"training the coder on {len(train)} reals of {sorted(set(src[train]))}")
        coder = train_coder([luminance(paths[i]) for i in train], args.steps)
        model_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(coder.state_dict(), model_path)
    x = None
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            if list(z["paths"]) == paths:
                x = z["x"]
    if x is None:
        t0, x = time.time(), np.zeros((len(paths), 6), np.float32)
        for i, p in enumerate(paths):
            x[i] = costs(coder, luminance(p))
            if (i + 1) % 2000 == 0:
                print(f"  {i + 1}/{len(paths)} images coded, {time.time() - t0:.0f} s")
        np.savez(cache, x=x, paths=np.array(paths))
    gaps = np.isnan(x)  # a centre too small to code at the coarser scale: its column's mean
    x[gaps] = np.take(np.nanmean(x, axis=0), np.nonzero(gaps)[1])

    res: dict = {"coder_trained_on": sorted(set(src[~in_fold & (y == 0)]))}
    print("\nmean bits/pixel by source and label (nll0, h0, gap0):")
    res["by_source"] = {}
    for s in sorted(set(src)):
        for lab in (0, 1):
            m = (src == s) & (y == lab)
            if m.any():
                v = [round(float(a), 4) for a in x[m, :3].mean(0)]
                res["by_source"][f"{s}/{'fake' if lab else 'real'}"] = v
                print(f"  {s:15s} {'fake' if lab else 'real'}: {v}")
    gap = x[:, 2]  # a priori: cheaper than the coder expects = generated; squashed into (0, 1)
    score = 1 / (1 + np.exp((gap - np.median(gap)) / (gap.std() + 1e-9)))  # for AUC only
    print("\nzero-shot score -gap0, leave-one-kind-out folds:")
    folds = {}
    for fold, held in FOLDS.items():
        test = np.isin(src, held)
        entry = fold_figures(y[test], score[test], grp[test])
        split = by_fake_source(y[test], src[test], score[test])
        if split:
            entry["by_source"] = split
        folds[fold] = entry
        print(f"  {fold:>10}: {auc_text(entry)}")
    aucs = [f["auc"] for f in folds.values()]
    res["zero_shot"] = {"folds": folds, "mean": round(float(np.mean(aucs)), 4)}
    print(f"  mean {np.mean(aucs):.3f}, worst {np.min(aucs):.3f}")
    res["zero_shot"]["within_source"] = {}
    for s in sorted(set(src)):
        m = src == s
        if len(set(y[m])) == 2:
            auc = round(roc_auc(y[m], score[m]), 4)
            res["zero_shot"]["within_source"][s] = auc
            print(f"  within {s}: {auc:.3f}")
    control = real_vs_real(score, src, y)
    res["zero_shot"]["real_vs_real"] = control.figures
    print(f"  real-vs-real: {len(control.flags)} of {len(control.figures['pairs'])} outside")
    for pair, auc in control.figures["pairs"].items():
        print(f"    {pair}: {auc}")
    print("\nlogistic head on the 6 numbers, per fold:")
    res["head"] = fold_scores(x, y, src, grp, args.c)
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), **res}, indent=1) + "\n")


if __name__ == "__main__":
    main()
