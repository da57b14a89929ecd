"""A shipped model exported to ONNX against the torch scoring core, on 5 random crops and the
astronaut's face: the largest probability and logit differences, against torch in float32 and
against torch as detection runs it (CLIP under bfloat16 autocast where the CPU has it).

    python benchmarks/onnx_agreement.py [--model facetrust-default]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

import facetrust.detect.experts.clip as clip_expert
from facetrust.detect.onnx_export import export_onnx
from facetrust.detect.onnx_runtime import OnnxFaceScorer
from facetrust.detect.scoring import FaceScorer
from facetrust.models import load_checkpoint, resolve_model
from facetrust.models.clip import shared_clip_vit_b16

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="facetrust-default")
    args = ap.parse_args()
    path = resolve_model(args.model)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(5)]
    img = cv2.cvtColor(cv2.imread(str(ROOT / "examples" / "astronaut.jpg")), cv2.COLOR_BGR2RGB)
    crops.append(np.ascontiguousarray(cv2.resize(img[40:210, 140:310], (256, 256))))
    with tempfile.TemporaryDirectory() as d:
        got = OnnxFaceScorer(export_onnx(path, Path(d) / "m.onnx"), threads=2)(crops)
    model, meta = load_checkpoint(path)
    as_detected = FaceScorer(model, meta)(crops)
    clip_expert._cpu_bf16 = lambda: False  # the float32 tower, no autocast
    fp32 = FaceScorer(model, meta, runtime={"clip": {"tower": shared_clip_vit_b16()}})(crops)
    for name, ref in (("torch fp32", fp32), ("torch as detection runs it", as_detected)):
        dp = np.abs(got.probability - ref.probability).max()
        dz = np.abs(got.logits - ref.logits).max()
        print(f"{args.model}: ONNX vs {name}: max |p| {dp:.2g}, max |logit| {dz:.2g}")


if __name__ == "__main__":
    main()
