"""Landmark-guided micro-warp: move eyes, nose and mouth by at most a pixel or two.

For each face a random displacement is drawn at anchor landmarks (eye corners and lids, nose
bridge, tip and wings, mouth corners and lips). The sparse displacements are spread into a
smooth field by Gaussian radial basis functions on a coarse grid (one node every ~1/32 of the
face), upsampled bilinearly to pixels, scaled so that the largest displacement is exactly
``max_px``, and multiplied by the face's feathered mask: the field fades to exactly 0 where the
mask is 0, so the image is unchanged there and no seam appears. Faces' fields add up and the sum
is clipped, pixel by pixel, to ``max_px``. The warp is applied with ``grid_sample`` (bilinear,
border padding): ``out(p) = in(p + D(p))``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from facetrust.errors import InputError
from facetrust.faces import Face
from facetrust.protect.mask import face_mask

__all__ = ["MAX_WARP_PX", "anchor_points", "apply_warp", "displacement_field", "micro_warp"]

MAX_WARP_PX = 2.0

# FaceMesh indices: eye corners and lids, nose bridge/tip/wings/base, mouth corners and lips.
_EYES = (33, 133, 159, 145, 263, 362, 386, 374)
_NOSE = (6, 197, 4, 1, 2, 98, 327)
_MOUTH = (61, 291, 0, 17, 13, 14, 40, 270, 91, 321)
ANCHORS = _EYES + _NOSE + _MOUTH
_KEYPOINT_ANCHORS = (0, 1, 2, 3)  # BlazeFace: right eye, left eye, nose tip, mouth


def anchor_points(face: Face) -> np.ndarray:
    """``(N, 2)`` anchor pixels of ``face``: 25 FaceMesh points, or 4 keypoints without mesh."""
    if face.landmarks is not None and len(face.landmarks) >= 468:
        return np.asarray(face.landmarks, dtype=np.float64)[list(ANCHORS), :2]
    return np.asarray(face.keypoints, dtype=np.float64)[list(_KEYPOINT_ANCHORS), :2]


def displacement_field(
    shape: tuple[int, int],
    faces: list[Face],
    max_px: float = 1.5,
    rng: np.random.Generator | None = None,
    feather: float = 0.05,
) -> np.ndarray:
    """Dense displacement ``(H, W, 2)`` (dx, dy in pixels) with ``|D| <= max_px`` everywhere.

    Zero wherever every face's feathered mask is zero.
    """
    if not 0.0 <= max_px <= MAX_WARP_PX:
        raise InputError(f"warp amplitude must be in [0, {MAX_WARP_PX}] pixels, got {max_px}")
    rng = rng if rng is not None else np.random.default_rng(0)
    h, w = shape
    field = np.zeros((h, w, 2), np.float32)
    if max_px == 0:
        return field
    for face in faces:
        mask, (x0, y0, x1, y1) = face_mask(shape, face, feather)
        if mask.size == 0:
            continue
        anchors = anchor_points(face) - [x0, y0]
        angle = rng.uniform(0, 2 * np.pi, len(anchors))
        mag = rng.uniform(0.5, 1.0, len(anchors))
        disp = np.stack([np.cos(angle), np.sin(angle)], 1) * mag[:, None]
        side = max(face.width, face.height, 8.0)
        sigma = 0.08 * side
        step = max(1, int(round(side / 32.0)))
        nx = (x1 - x0 - 1) // step + 2  # nodes at 0, step, 2 step, ... past the ROI's end
        ny = (y1 - y0 - 1) // step + 2
        px, py = np.meshgrid(np.arange(nx) * step, np.arange(ny) * step)
        d2 = (px[..., None] - anchors[:, 0]) ** 2 + (py[..., None] - anchors[:, 1]) ** 2
        coarse = torch.from_numpy((np.exp(-d2 / (2 * sigma**2)) @ disp).astype(np.float32))
        # bilinear with align_corners: node (i, j) lands exactly on pixel (i step, j step)
        fine_t = F.interpolate(
            coarse.permute(2, 0, 1)[None],
            size=((ny - 1) * step + 1, (nx - 1) * step + 1),
            mode="bilinear",
            align_corners=True,
        )
        fine = fine_t[0].permute(1, 2, 0).numpy()[: y1 - y0, : x1 - x0].copy()
        peak = float(np.sqrt((fine**2).sum(-1)).max())
        if peak > 1e-9:
            fine *= max_px / peak
        field[y0:y1, x0:x1] += fine * mask[..., None]
    norm = np.sqrt((field**2).sum(-1, keepdims=True))
    over = norm > max_px
    if over.any():  # overlapping faces: clip the sum
        field = np.where(over, field * (max_px / np.maximum(norm, 1e-12)), field)
    return field.astype(np.float32)


def apply_warp(image: np.ndarray, field: np.ndarray) -> np.ndarray:
    """Warp ``image`` (H, W, 3) float32 in [0, 1] by ``field`` (H, W, 2): ``out(p) = in(p+D(p))``.

    Only the bounding box of the non-zero field is resampled; pixels where the field is zero
    keep their exact values.
    """
    if image.ndim != 3 or image.shape[:2] != field.shape[:2] or field.shape[2] != 2:
        raise InputError(
            f"image (H, W, 3) and field (H, W, 2) must match, got {image.shape}, {field.shape}"
        )
    moving = np.any(field != 0, axis=-1)
    out = image.astype(np.float32, copy=True)
    if not moving.any():
        return out
    ys, xs = np.nonzero(moving)
    h, w = moving.shape
    pad = int(np.ceil(np.abs(field).max())) + 2
    x0, x1 = max(0, xs.min() - pad), min(w, xs.max() + pad + 1)
    y0, y1 = max(0, ys.min() - pad), min(h, ys.max() + pad + 1)
    src = torch.from_numpy(np.ascontiguousarray(image[y0:y1, x0:x1], np.float32))
    src = src.permute(2, 0, 1)[None]
    f = torch.from_numpy(np.ascontiguousarray(field[y0:y1, x0:x1]))
    hh, ww = y1 - y0, x1 - x0
    yy, xx = torch.meshgrid(
        torch.arange(hh, dtype=torch.float32), torch.arange(ww, dtype=torch.float32), indexing="ij"
    )
    sx = (xx + f[..., 0] + x0).clamp(0, w - 1) - x0  # sample inside the image
    sy = (yy + f[..., 1] + y0).clamp(0, h - 1) - y0
    # pixel centres -> normalised coordinates (align_corners=True: -1 and 1 are the end pixels)
    grid = torch.stack([2 * sx / max(ww - 1, 1) - 1, 2 * sy / max(hh - 1, 1) - 1], -1)[None]
    warped = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=True)
    warped = warped[0].permute(1, 2, 0).numpy()
    region = out[y0:y1, x0:x1]
    m = moving[y0:y1, x0:x1]
    region[m] = warped[m]
    return out


def micro_warp(
    image: np.ndarray,
    faces: list[Face],
    max_px: float = 1.5,
    rng: np.random.Generator | None = None,
    feather: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp the faces in ``image`` (H, W, 3 float32 in [0, 1]); returns ``(warped, field)``."""
    field = displacement_field(image.shape[:2], faces, max_px, rng, feather)
    return apply_warp(image, field), field
