"""Train the ``resynth`` pseudo-fake's autoencoder on real face crops.

    python scripts/train_resynth.py data/shared.jsonl --sources webfaces,imfdb

Random square patches of the reals' cached crops (flipped at random) are reconstructed through
:func:`facetrust.data.pseudo.resynth.build_resynth_net`; the loss is the L1 error of the pixels
plus ``spectral`` times the L1 error of the log amplitude spectra (so the decoder does not
settle for a blur: its output keeps a real's share of fine texture and the traces are the
decoder's, not a low-pass filter's). A tenth of the crops (by row, seeded) is held out and its
reconstruction PSNR reported. The weights go to a ``.safetensors`` file whose metadata holds
the architecture, the sources, the steps and the held-out PSNR.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facetrust.data.manifest import read_crop, read_manifest
from facetrust.errors import InputError

__all__ = ["ResynthTraining", "train_resynth"]


@dataclass(frozen=True)
class ResynthTraining:
    """Settings of :func:`train_resynth`."""

    sources: tuple[str, ...] = ("webfaces", "imfdb")
    steps: int = 2000
    batch: int = 12
    patch: int = 96
    width: int = 32
    latent: int = 4
    lr: float = 2e-3
    spectral: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1:
            raise InputError(f"steps and batch must be >= 1, got {self.steps}, {self.batch}")
        if self.patch < 16 or self.patch % 4:
            raise InputError(f"patch must be a multiple of 4, >= 16, got {self.patch}")
        if not self.sources:
            raise InputError("give at least one source of real faces")


def _spectrum(x):
    import torch

    return torch.log1p(torch.fft.rfft2(x, norm="ortho").abs())


def _psnr(net, crops: Sequence[np.ndarray]) -> float:
    from facetrust.data.pseudo.resynth import resynthesise

    mse = [
        np.mean((resynthesise(c, net).astype(np.float64) - c.astype(np.float64)) ** 2)
        for c in crops
    ]
    return float(10 * math.log10(255**2 / max(float(np.mean(mse)), 1e-12)))


def train_resynth(
    manifest: str | Path,
    out: str | Path,
    cfg: ResynthTraining | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Fit the autoencoder on the real crops of ``cfg.sources`` in ``manifest``; write ``out``.

    Returns the summary stored in the file's metadata (``psnr_heldout`` in dB among it).
    """
    import torch
    from safetensors.torch import save_file

    from facetrust.data.pseudo.resynth import build_resynth_net

    cfg = cfg or ResynthTraining()
    rows = [r for r in read_manifest(manifest) if r.label == "real" and r.source in cfg.sources]
    rows = [r for r in rows if r.crop]
    if len(rows) < 10:
        raise InputError(
            f"{len(rows)} real crops of {', '.join(cfg.sources)} in {manifest}: need >= 10 "
            "(run facetrust prepare first)"
        )
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(rows))
    n_val = max(1, len(rows) // 10)
    crops = [read_crop(manifest, rows[i].crop) for i in order]
    val, train = crops[:n_val], crops[n_val:]
    small = [c for c in train if min(c.shape[:2]) < cfg.patch]
    if small:
        raise InputError(f"{len(small)} crops are smaller than the {cfg.patch}-pixel patch")
    torch.manual_seed(cfg.seed)
    net = build_resynth_net(cfg.width, cfg.latent)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    warm = max(1, cfg.steps // 20)  # linear warm-up, then a cosine down to zero
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warm)
            * 0.5
            * (1 + math.cos(math.pi * min(1.0, max(0, s - warm) / max(1, cfg.steps - warm))))
        ),
    )
    p, t0, running = cfg.patch, time.time(), None
    for step in range(1, cfg.steps + 1):
        batch = np.empty((cfg.batch, p, p, 3), np.uint8)
        for k in range(cfg.batch):
            c = train[int(rng.integers(len(train)))]
            y0, x0 = (int(rng.integers(s - p + 1)) for s in c.shape[:2])
            patch = c[y0 : y0 + p, x0 : x0 + p]
            batch[k] = patch[:, ::-1] if rng.random() < 0.5 else patch
        x = torch.from_numpy(batch.transpose(0, 3, 1, 2).copy()).float() / 255
        y = net(x)
        loss = (y - x).abs().mean() + cfg.spectral * (_spectrum(y) - _spectrum(x)).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0 or step == cfg.steps:
            log(f"step {step}/{cfg.steps} loss {running:.4f} ({time.time() - t0:.0f} s)")
    net.eval()
    summary = {
        **asdict(cfg),
        "sources": list(cfg.sources),
        "crops_train": len(train),
        "crops_heldout": len(val),
        "psnr_heldout": round(_psnr(net, val), 2),
        "seconds": round(time.time() - t0),
    }
    log(f"held-out reconstruction PSNR {summary['psnr_heldout']} dB on {len(val)} crops")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"width": str(cfg.width), "latent": str(cfg.latent), "training": json.dumps(summary)}
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out), metadata=meta)
    return summary
