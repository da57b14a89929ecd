"""Face-found rate per source on ../shared/data (the images there are face crops: one face each).

Usage: python benchmarks/faces_shared.py [--data ../shared/data] [--per-source N] [--min-side 64]
Prints, per source, how many images (shorter side >= min-side) had at least one face found.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict
from pathlib import Path

from facetrust.faces import FaceDetector
from facetrust.media import load_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument(
        "--per-source", type=int, default=0, help="sample this many per source (0 = all)"
    )
    ap.add_argument("--min-side", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--misses", help="write the paths of missed images to this file")
    args = ap.parse_args()
    root = Path(args.data)
    rows = [json.loads(line) for line in (root / "manifest.jsonl").open()]
    by_source = defaultdict(list)
    for r in rows:
        if min(r["width"], r["height"]) >= args.min_side:
            by_source[r["source"]].append(r)
    rng = random.Random(args.seed)
    det = FaceDetector(landmarks=False, verify=True)
    misses = []
    total_found = total = 0
    t_all = 0.0
    print(f"{'source':16s} {'images':>7s} {'found':>7s} {'rate':>7s} {'ms/img':>7s}")
    for source in sorted(by_source):
        items = by_source[source]
        if args.per_source and len(items) > args.per_source:
            items = rng.sample(items, args.per_source)
        found = 0
        t0 = time.perf_counter()
        for r in items:
            faces = det(load_image(root / r["path"]))
            if faces:
                found += 1
            else:
                misses.append(r["path"])
        dt = time.perf_counter() - t0
        t_all += dt
        total += len(items)
        total_found += found
        print(
            f"{source:16s} {len(items):7d} {found:7d} {found / len(items):7.1%} "
            f"{1000 * dt / len(items):7.1f}"
        )
    print(
        f"{'all':16s} {total:7d} {total_found:7d} {total_found / total:7.1%} "
        f"{1000 * t_all / total:7.1f}"
    )
    if args.misses:
        Path(args.misses).write_text("\n".join(misses) + "\n")


if __name__ == "__main__":
    main()
