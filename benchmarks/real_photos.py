"""False positives of a detector on real photos of people that ship in registry packages.

Two sets, each face scored by each model:
  groups     the seven multi-face photos of ``faces_groups.py`` (six in the npm package
             ``@vladmandic/face-api``, insightface's ``t1.jpg``; 28 faces)
  portraits  the 41 photos of ``faces_portraits.py`` (portraits, face crops and small groups from
             ten npm / PyPI packages; 55 faces)
For each set, and for both together, prints the faces scored, how many reach the model's threshold
(and how many of those are labelled fake, not uncertain) and their probabilities, then one line
per flagged face with its file and the face's number in it (the sets tagged [groups] /
[portraits] / [all]). Usage:

  python benchmarks/real_photos.py [--set groups|portraits|all]
                                   [--models facetrust-default facetrust-fast]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import faces_groups
import faces_portraits

from facetrust.detect import Detector

SETS = {"groups": faces_groups.fetch, "portraits": faces_portraits.fetch}


def report(
    name: str, tag: str, threshold: float, scored: list[tuple[str, float, str]], files: bool = True
) -> None:
    """A summary line over ``scored`` ((face, probability, label) per face), then the flagged
    faces."""
    above = sorted(((p, k, lab) for k, p, lab in scored if p >= threshold), reverse=True)
    probs = [round(p, 3) for p, _, _ in above]
    fake = sum(lab == "fake" for _, _, lab in above)
    highest = max(p for _, p, _ in scored)
    print(
        f"{name} [{tag}]: {len(above)}/{len(scored)} real faces at or above its threshold "
        f"{threshold:.3f} ({fake} labelled fake) {probs}; highest {highest:.3f}"
    )
    for p, k, lab in above if files else []:
        print(f"  flagged {p:.3f} ({lab}) {k}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "facetrust-bench")
    ap.add_argument("--set", choices=[*SETS, "all"], default="all", help="photo set (default all)")
    ap.add_argument("--models", nargs="+", default=["facetrust-default", "facetrust-fast"])
    args = ap.parse_args()
    sets = list(SETS) if args.set == "all" else [args.set]
    files = {s: sorted(SETS[s](args.cache).items()) for s in sets}
    for name in args.models:
        det = Detector(name)
        every = []
        for s in sets:
            scored = [
                (f"{k} face {i + 1}", f.fake_probability, f.label)
                for k, p in files[s]
                for i, f in enumerate(det(p).faces)
            ]
            report(name, s, det.threshold, scored)
            every += scored
        if len(sets) > 1:  # the per-set lines above already name the flagged files
            report(name, "all", det.threshold, every, files=False)


if __name__ == "__main__":
    main()
