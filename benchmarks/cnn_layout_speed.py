"""CNN time on the CPU in each memory layout and precision, interleaved in one run.

  python benchmarks/cnn_layout_speed.py [--threads 2] [--rounds 3] [--batch 128]

Scoring: facetrust-fast's EfficientNet-Lite0 on one 256 px crop at a time (as `facetrust
detect` meets faces): the batch as its `Preprocess` makes it (the uint8 NHWC crop permuted, so
channels-last in memory: what the scoring core runs), the same batch copied to NCHW, and the
former under bfloat16 autocast where the CPU computes it natively; prints the median ms per
face and the largest logit change against the first on 16 random crops. Training: one AdamW
step of a batch of ``--batch`` 192 px crops (forward, BCE, backward; a collated batch is NCHW),
in NCHW and channels-last (model and batch), float32 and bfloat16 (the trainer uses
channels-last, and bfloat16 autocast on such a CPU when ``optim.amp`` is on). Each round times
every variant once, in an order that alternates, so a busy machine affects all alike.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from facetrust.config import apply_threads, resolve_dtype

VARIANTS = [  # training: (name, channels-last model and batch, bfloat16)
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
    from facetrust.models.preprocess import Preprocess
    from facetrust.models.zoo import resolve_model

    native = resolve_dtype("auto", "cpu") == torch.bfloat16
    variants = [v for v in VARIANTS if native or not v[2]]
    print(f"{args.threads} threads; bfloat16 native on this CPU: {native}")

    model, meta = load_checkpoint(resolve_model("facetrust-fast"), device="cpu")
    model.eval()
    s = meta.input_size
    pre = Preprocess.from_meta(meta)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(16)]
    with torch.inference_mode():
        ref = model(pre(crops))[:, 0]
    scoring = [  # (name, NCHW copy, bfloat16)
        ("as preprocessed (channels-last), float32", False, False),
        ("copied to NCHW, float32", True, False),
        ("as preprocessed, bfloat16", False, True),
    ]
    scoring = [v for v in scoring if native or not v[2]]
    infer = {n: [] for n, *_ in scoring}
    change = {}

    def batch(i: int, j: int, nchw: bool) -> torch.Tensor:
        x = pre(crops[i:j])
        return x.contiguous() if nchw else x

    for r in range(args.rounds):
        for name, nchw, bf in scoring if r % 2 == 0 else scoring[::-1]:
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf):
                out = model(batch(0, 16, nchw))[:, 0].float()
                change[name] = float((out - ref).abs().max())
                for i in range(3):
                    model(batch(i, i + 1, nchw))
                for i in range(args.faces):
                    t0 = time.perf_counter()
                    model(batch(i % 16, i % 16 + 1, nchw))
                    infer[name].append(time.perf_counter() - t0)
    print(f"scoring, {meta.name or 'facetrust-fast'} ({meta.arch}, {s} px), one crop a call:")
    for name, *_ in scoring:
        print(
            f"  {name:42s} median {1000 * np.median(infer[name]):6.1f} ms per face   "
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
