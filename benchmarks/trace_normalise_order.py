"""Does a ``trace`` pseudo-fake keep its up-sampling trace through the Normaliser?

On a 256-px crop of scikit-image's astronaut photo, the period-``f`` peak of the column profile
of |horizontal differences| (an NPR-like measure: its spectral magnitude at 1/f over the
median, ~1 for a photo) is printed, median of 8 seeds, for: the trace fake alone; the fake
then the default ``Normaliser``; the normalised real; the real normalised first and then made
into a trace fake (the same re-encode drawn for both). Usage::

    uv run python benchmarks/trace_normalise_order.py
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage import data

from facetrust.data.normalise import Normaliser
from facetrust.data.pseudo import upsample_trace


def peak(img: np.ndarray, f: int) -> float:
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)
    p = np.abs(np.diff(g, axis=1)).mean(axis=0)
    n = len(p) // f * f
    s = np.abs(np.fft.rfft(p[:n] - p[:n].mean()))
    return float(s[n // f] / np.median(s[1:]))


def main() -> None:
    crop = np.ascontiguousarray(data.astronaut()[20:276, 100:356])
    norm = Normaliser(256)
    print("op | trace | trace, then normalise | normalised real | normalise, then trace")
    print("---|---|---|---|---")
    for op, f in (("nearest", 2), ("transposed", 2), ("nearest", 4), ("transposed", 4)):
        cols: list[list[float]] = [[], [], [], []]
        for seed in range(8):
            rng = np.random.default_rng(seed)
            fake, _ = upsample_trace(crop, rng, op=op, factor=f)
            params = norm.draw(rng)
            real_n = norm.apply(crop, params)
            cols[0].append(peak(fake, f))
            cols[1].append(peak(norm.apply(fake, params), f))
            cols[2].append(peak(real_n, f))
            cols[3].append(peak(upsample_trace(real_n, rng, op=op, factor=f)[0], f))
        print(f"{op} x{f} | " + " | ".join(f"{np.median(c):.1f}" for c in cols))


if __name__ == "__main__":
    main()
