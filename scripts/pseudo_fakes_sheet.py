"""Contact sheet of pseudo-fakes (docs/pseudo-fakes.png): real | sbi | splice | trace | resynth.

Two aligned 256-px face crops from scikit-image's astronaut photo (Eileen Collins, NASA, public
domain): the photo and its mirror image, each the other's splice donor (so a splice moves the
same person's mirrored features: subtler than a splice between two people). Each fake's mask
(the trace map for ``trace``) is shown under it, scaled to its maximum. The splice region and
the trace operation are set per row so that the sheet shows several; the rest is drawn from the
seed. To keep the PNG small without resampling away the traces, the images show the central
192 px of each crop at 1:1, and the masks (whole crop) are shown at half size. Usage::

    uv run python scripts/pseudo_fakes_sheet.py [out.png] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from facetrust.data.pseudo import create_pseudo_fake, splice, upsample_trace
from facetrust.faces import FaceAligner, FaceDetector
from facetrust.faces.align import transform_points

TILE = 192


def aligned_faces(size: int = 256, margin: float = 0.2) -> list[tuple[np.ndarray, np.ndarray]]:
    from skimage import data

    photo = data.astronaut()
    detector = FaceDetector(landmarks=True)
    aligner = FaceAligner(size=size, margin=margin)
    out = []
    for img in (photo, np.ascontiguousarray(photo[:, ::-1])):
        face = max(detector(img), key=lambda f: f.width * f.height)
        crop = aligner(img, face)
        out.append((crop, transform_points(face.landmarks[:, :2], aligner.matrix(face))))
    return out


def overlay(mask: np.ndarray) -> np.ndarray:
    m = np.clip(mask / max(float(mask.max()), 1e-6), 0, 1)
    return cv2.applyColorMap((m * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default="docs/pseudo-fakes.png")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    faces = aligned_faces()
    sbi, resynth = create_pseudo_fake("sbi"), create_pseudo_fake("resynth")
    rng = np.random.default_rng(args.seed)
    plan = [("inner_face", "transposed", 2), ("eyes", "pixel_shuffle", 4)]
    rows = []
    for i, (crop, pts) in enumerate(faces):
        donor, donor_pts = faces[1 - i]
        region, op, factor = plan[i]
        blended, remade = sbi(crop, pts, rng), resynth(crop, rng=rng)
        fakes = [
            ("sbi", blended.image, blended.mask),
            (f"splice: {region}", *splice(crop, pts, donor, donor_pts, rng, region=region)),
            (f"trace: {op} x{factor}", *upsample_trace(crop, rng, op=op, factor=factor)),
            ("resynth", remade.image, remade.mask),
        ]
        c = (crop.shape[0] - TILE) // 2
        top, bottom, labels = [crop[c : c + TILE, c : c + TILE]], [], ["real"]
        for label, image, mask in fakes:
            top.append(image[c : c + TILE, c : c + TILE])
            half = cv2.resize(overlay(mask), (TILE // 2, TILE // 2), interpolation=cv2.INTER_AREA)
            bottom.append(half)
            labels.append(label)
        strip = np.zeros((TILE // 2, TILE * len(top), 3), np.uint8)
        for j, half in enumerate(bottom, start=1):
            strip[:, j * TILE + TILE // 4 : j * TILE + TILE // 4 + TILE // 2] = half
        row = np.vstack([np.hstack(top), strip])
        canvas = Image.fromarray(row)
        draw = ImageDraw.Draw(canvas)
        for j, text in enumerate(labels):
            draw.text((j * TILE + 4, 2), text, fill=(255, 255, 0))
            if j:
                draw.text((j * TILE + 4, TILE + 2), "mask", fill=(255, 255, 0))
        rows.append(np.asarray(canvas))
    sheet = Image.fromarray(np.vstack(rows))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"{args.out}: {sheet.size[0]}x{sheet.size[1]}, {Path(args.out).stat().st_size} bytes")


if __name__ == "__main__":
    main()
