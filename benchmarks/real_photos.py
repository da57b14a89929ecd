"""False positives of a detector on real group photos that ship in registry packages.

The seven multi-face photos of ``faces_groups.py`` (six in the npm package ``@vladmandic/face-api``,
insightface's ``t1.jpg``; all real, 28 faces) are scored by each model; prints how many faces
reach the model's threshold. Usage:

  python benchmarks/real_photos.py [--models facetrust-default facetrust-fast]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from faces_groups import fetch

from facetrust.detect import Detector


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "facetrust-bench")
    ap.add_argument("--models", nargs="+", default=["facetrust-default", "facetrust-fast"])
    args = ap.parse_args()
    files = sorted(fetch(args.cache).values())
    for name in args.models:
        det = Detector(name)
        probs = [f.fake_probability for p in files for f in det(p).faces]
        above = sorted((round(p, 3) for p in probs if p >= det.threshold), reverse=True)
        print(
            f"{name}: {len(above)}/{len(probs)} real faces at or above its threshold "
            f"{det.threshold:.3f} {above}; highest {max(probs):.3f}"
        )


if __name__ == "__main__":
    main()
