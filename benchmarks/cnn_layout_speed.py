"""CNN time on the CPU in each memory layout and precision, interleaved in one run.

  python benchmarks/cnn_layout_speed.py [--threads 2] [--rounds 3] [--batch 128]

Scoring: facetrust-fast's EfficientNet-Lite0 on one 192 px face at a time (as `facetrust
detect` meets faces), float32 in the default NCHW layout and in channels-last (what the scoring
core runs since `facetrust.models.layout`), and the same two under bfloat16 autocast where the
CPU computes it natively; prints the median ms per face and the largest logit change against
NCHW float32 on 16 random crops. Training: one AdamW step of a batch of ``--batch`` 192 px
crops (forward, BCE, backward), the same four ways (the trainer uses channels-last, and
bfloat16 autocast on such a CPU when ``optim.amp`` is on). Each round times every variant once,
in an order that alternates, so a busy machine affects all alike.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from facetrust.config import apply_threads, resolve_dtype

VARIANTS = [  # (name, channels_last, bfloat16)
    ("NCHW float32", False, False),
    ("channels-last float32", True, False),
    ("NCHW bfloat16", False, True),
    ("channels-last bfloat16", True, True),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--faces", type=int, default=30, help="faces timed per variant and round")
    args = ap.parse_args()
    apply_threads(args.threads)
    from facetrust.models import create_model, load_checkpoint
    from facetrust.models.zoo import resolve_model

    native = resolve_dtype("auto", "cpu") == torch.bfloat16
    variants = [v for v in VARIANTS if native or not v[2]]
    print(f"{args.threads} threads; bfloat16 native on this CPU: {native}")

    model, meta = load_checkpoint(resolve_model("facetrust-fast"), device="cpu")
    model.eval()
    s = meta.input_size
    xs = torch.randn(16, 3, s, s)
    with torch.inference_mode():
        ref = model(xs)[:, 0]
    infer = {n: [] for n, *_ in variants}
    change = {}
    for r in range(args.rounds):
        for name, cl, bf in variants if r % 2 == 0 else variants[::-1]:
            model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
            x = xs.contiguous(memory_format=torch.channels_last) if cl else xs.contiguous()
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf):
                out = model(x)[:, 0].float()
                change[name] = float((out - ref).abs().max())
                for _ in range(3):
                    model(x[:1])
                for i in range(args.faces):
                    t0 = time.perf_counter()
                    model(x[i % 16 : i % 16 + 1])
                    infer[name].append(time.perf_counter() - t0)
    print(f"scoring, {meta.name or 'facetrust-fast'} ({meta.arch}, {s} px), one face a call:")
    for name, *_ in variants:
        print(
            f"  {name:24s} median {1000 * np.median(infer[name]):6.1f} ms per face   "
            f"max |logit change| {change[name]:.2e}"
        )

    torch.manual_seed(0)
    net = create_model(meta.arch, pretrained=False)
    opt = torch.optim.AdamW(net.parameters(), 1e-4)
    xb = torch.randn(args.batch, 3, s, s)
    yb = torch.randint(0, 2, (args.batch,)).float()
    train = {n: [] for n, *_ in variants}
    for r in range(args.rounds):
        for name, cl, bf in variants if r % 2 == 0 else variants[::-1]:
            net.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
            x = xb.contiguous(memory_format=torch.channels_last) if cl else xb.contiguous()
            for timed in (False, True):  # one untimed step after a layout change
                t0 = time.perf_counter()
                with torch.autocast("cpu", torch.bfloat16, enabled=bf):
                    out = net(x)[:, 0]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(out.float(), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if timed:
                    train[name].append(time.perf_counter() - t0)
    print(f"training, one AdamW step of {args.batch} crops ({meta.arch}, {s} px):")
    base = np.median(train[variants[0][0]])
    for name, *_ in variants:
        t = np.median(train[name])
        print(f"  {name:24s} median {t:6.2f} s per step   {base / t:4.1f}x")


if __name__ == "__main__":
    main()
