"""Train the autoencoder of the ``resynth`` pseudo-fake (``facetrust/assets/resynth``).

  uv run python scripts/train_resynth.py data/shared.jsonl [--sources webfaces,imfdb]
                                         [--steps 2000] [--out PATH]

Reals only, of sources that are not a leave-one-kind-out fold's test set (webfaces, imfdb), so
no fold's held-out faces shaped the decoder. See facetrust.train.resynth for the loss.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from facetrust.config import apply_threads
from facetrust.data.pseudo.resynth import DEFAULT_RESYNTH
from facetrust.train.resynth import ResynthTraining, train_resynth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("manifest")
    ap.add_argument("--out", default=str(DEFAULT_RESYNTH))
    ap.add_argument("--threads", type=int, default=2)
    for f in fields(ResynthTraining):
        if f.name != "sources":
            ap.add_argument(f"--{f.name}", type=type(f.default), default=f.default)
    ap.add_argument("--sources", default=",".join(ResynthTraining.sources))
    args = ap.parse_args()
    apply_threads(args.threads)
    cfg = ResynthTraining(
        **{f.name: getattr(args, f.name) for f in fields(ResynthTraining) if f.name != "sources"},
        sources=tuple(s for s in args.sources.split(",") if s),
    )
    print(train_resynth(args.manifest, args.out, cfg, log=lambda m: print(m, flush=True)))


if __name__ == "__main__":
    main()
