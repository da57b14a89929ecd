"""CLIP expert time per face: class tokens vs class + mean patch tokens with L2 (the session-18
default's pooling), interleaved in one run so a busy or drifting machine affects both alike;
and the latter again on the float32-stored tower (what scoring read before its linear weights
were stored in bfloat16 on CPUs that compute it natively: the same features, see
``facetrust.models.clip.bf16_weights``).

  python benchmarks/clip_pool_speed.py [--rounds 5] [--threads 2] [--models A B ...]
                                      [--sizes 224 160 ...]

Random 256 x 256 crops, one face per call (as `facetrust detect` meets them); prints the median
and 10th percentile of each pooling. ``--models`` also times whole fused models (CNN + experts
+ stack, `Detector.score_crops` on the torch runtime) the same interleaved way, e.g. the shipped
default against an older checkpoint: separate runs of benchmarks/model_speed.py on a shared
machine differ by 15 % or more from one run to the next. ``--sizes`` also times the default's
pooling (class + mean patch tokens, L2) with the crop resized to each CLIP input side
(``ClipExpert(size=...)``, ``facetrust fuse --clip-size``), interleaved the same way.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from facetrust.config import apply_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="*", default=[], help="fused checkpoints or shipped names")
    ap.add_argument("--sizes", nargs="*", type=int, default=[], help="CLIP input sides, e.g. 160")
    args = ap.parse_args()
    apply_threads(args.threads)
    from facetrust.detect.experts import ClipExpert

    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(8)]
    from facetrust.models.clip import shared_clip_vit_b16

    pools = {
        "cls": ClipExpert(pool="cls"),
        "cls+mean, L2": ClipExpert(pool="cls+mean", l2=True),
        "cls+mean, L2, float32-stored tower": ClipExpert(
            pool="cls+mean", l2=True, tower=shared_clip_vit_b16()
        ),
    }
    interleaved("CLIP expert", {n: e.features for n, e in pools.items()}, crops, args)
    if args.sizes:
        sized = {f"{s} px": ClipExpert(pool="cls+mean", l2=True, size=s) for s in args.sizes}
        calls = {n: e.features for n, e in sized.items()}
        interleaved("CLIP expert (cls+mean, L2)", calls, crops, args)
    if args.models:
        from facetrust.detect import Detector
        from facetrust.models.zoo import resolve_model

        models = {}
        for m in args.models:
            det = Detector(resolve_model(m), device="cpu", runtime="torch")
            models[m] = det.score_crops
        interleaved("fused model", models, crops, args)


def interleaved(what: str, calls: dict, crops: list[np.ndarray], args) -> None:
    """Time each of ``calls`` on one crop at a time, alternating their order every round."""
    for call in calls.values():  # load, warm up
        call(crops[:1])
    times: dict[str, list[float]] = {n: [] for n in calls}
    for r in range(args.rounds):
        order = list(calls) if r % 2 == 0 else list(reversed(calls))
        for crop in crops:
            for name in order:
                t0 = time.perf_counter()
                calls[name]([crop])
                times[name].append(time.perf_counter() - t0)
    for name, v in times.items():
        print(
            f"{what}, {name}: median {1000 * np.median(v):.1f} ms per face, "
            f"p10 {1000 * np.percentile(v, 10):.1f} ms ({len(v)} calls, {args.threads} threads)"
        )


if __name__ == "__main__":
    main()
