"""CLIP tower time per face in bfloat16 (autocast, bf16-stored weights) and float32, interleaved,
and which of the two facetrust picks on this CPU (``facetrust.config.resolve_dtype("auto")``).

  python benchmarks/bf16_speed.py [--rounds 5] [--threads 2]

Run it under a oneDNN/MKL ISA cap to see a CPU without bfloat16 arithmetic, e.g. plain AVX-512
(Skylake to Ice Lake Xeons), where PyTorch's own check still calls bfloat16 supported:

  ONEDNN_MAX_CPU_ISA=AVX512_CORE MKL_ENABLE_INSTRUCTIONS=AVX512 python benchmarks/bf16_speed.py
  ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/bf16_speed.py

One 224 px face per call, class + mean patch tokens of all 12 blocks (the default's pooling);
prints the median of each.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from facetrust.config import apply_threads, cpu_bf16_native, resolve_dtype
from facetrust.models.clip import bf16_weights, load_clip_vit_b16


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    apply_threads(args.threads)
    towers = {"bfloat16": bf16_weights(load_clip_vit_b16()), "float32": load_clip_vit_b16()}
    x = torch.randn(1, 3, 224, 224)
    layers = tuple(range(1, 13))

    def run(name: str) -> float:
        t0 = time.perf_counter()
        with (
            torch.inference_mode(),
            torch.autocast("cpu", torch.bfloat16, enabled=name != "float32"),
        ):
            towers[name].block_tokens(x, layers, "cls+mean")
        return time.perf_counter() - t0

    for name in towers:  # warm-up
        run(name), run(name)
    times: dict[str, list[float]] = {name: [] for name in towers}
    for _ in range(args.rounds):
        for name in towers:
            times[name].append(run(name))
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "none")
    print(
        f"ONEDNN_MAX_CPU_ISA={cap}: bfloat16 arithmetic in the CPU {cpu_bf16_native()}, "
        f"PyTorch's check {bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}; facetrust "
        f"picks {str(resolve_dtype('auto', 'cpu')).removeprefix('torch.')}"
    )
    for name, t in times.items():
        print(f"  CLIP tower in {name:8s} {1000 * np.median(t):6.0f} ms per face")


if __name__ == "__main__":
    main()
