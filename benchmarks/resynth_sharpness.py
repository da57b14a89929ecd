"""How much softer is a resynth twin than its real, and its control than the twin?

For every ``--step``-th real of the manifest (crops from ``facetrust prepare``): the twin
(``resynth`` maker, shipped settings) and its real-labelled control (``Resynth.control``); prints
the mean log ratio of the grey Laplacian's variance (finest detail) and the share of faces where
the first is softer, for twin vs real and twin vs control. Usage:

  python benchmarks/resynth_sharpness.py data/shared.jsonl --step 90
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from facetrust.config import apply_threads
from facetrust.data.manifest import read_crop, read_manifest
from facetrust.data.pseudo import create_pseudo_fake


def sharpness(img: np.ndarray) -> float:
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("manifest")
    ap.add_argument("--step", type=int, default=90, help="every STEP-th real")
    args = ap.parse_args()
    apply_threads(2)
    reals = [r for r in read_manifest(args.manifest) if r.crop and r.label == "real"]
    maker = create_pseudo_fake("resynth")
    vs_real, vs_control = [], []
    for row in reals[:: args.step]:
        real = read_crop(args.manifest, row.crop)
        twin = maker(real, rng=0).image
        control = maker.control(real, twin)
        vs_real.append(np.log(sharpness(twin) / sharpness(real)))
        vs_control.append(np.log(sharpness(twin) / sharpness(control)))
    for name, r in (("twin vs real", vs_real), ("twin vs control", vs_control)):
        r = np.array(r)
        print(
            f"{name:16s} {len(r)} faces: mean log Laplacian-variance ratio {r.mean():+.3f}, "
            f"twin softer for {np.mean(r < 0):.0%}"
        )


if __name__ == "__main__":
    main()
