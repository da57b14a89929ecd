"""Which CLIP tokens a block is read as (torch-free, shared by the tower, the expert, the CLI).

A pool is ``+``-joined parts in the order of :data:`POOL_PARTS`, 768 numbers each per block:

- ``cls``: the class token (UnivFD, Ojha et al. CVPR 2023);
- ``mean``: the mean of the 196 patch tokens (RINE, ECCV 2024, reads it beside the class token);
- ``center``: the mean of the central :data:`CENTER` x :data:`CENTER` patches of the 14 x 14
  grid: on an aligned face crop the inner face (eyes to mouth), without the margin where the
  background, hair and the border padding of faces cut at an image's edge differ by source.
"""

from __future__ import annotations

POOL_PARTS = ("cls", "mean", "center")
GRID = 14  # patches per side of CLIP ViT-B/16 at 224 px
CENTER = 8  # patches per side of the central window
CENTER_SIZE = 224  # the input side (of GRID patches) the central window is defined on
SIZES = tuple(range(64, 449, 16))  # input sides a CLIP tower can be resized to (at_size)


def pool_parts(pool: str) -> tuple[str, ...]:
    """``"cls+mean"`` -> ``("cls", "mean")``; ValueError unless ``pool`` names distinct parts
    of :data:`POOL_PARTS` in that order."""
    parts = tuple(p.strip() for p in str(pool).split("+"))
    known = all(p in POOL_PARTS for p in parts)
    ordered = known and list(parts) == sorted(set(parts), key=POOL_PARTS.index)
    if not parts or not ordered:
        raise ValueError(
            f"CLIP pool must be {'/'.join(POOL_PARTS)} joined by '+' in that order "
            f"(e.g. 'cls+mean'), got {pool!r}"
        )
    return parts


def check_size(size: object, pool: str = "cls") -> int:
    """``size`` as an int CLIP input side; ValueError unless it is one of :data:`SIZES` and,
    when ``pool`` reads ``center``, :data:`CENTER_SIZE` (the window is defined on its grid)."""
    if isinstance(size, bool) or not isinstance(size, int) or size not in SIZES:
        raise ValueError(
            f"CLIP input size must be a multiple of 16 in {SIZES[0]}-{SIZES[-1]}, got {size!r}"
        )
    if size != CENTER_SIZE and "center" in pool_parts(pool):
        raise ValueError(f"the CLIP pool 'center' needs size {CENTER_SIZE}, got {size}")
    return size


def center_slice() -> slice:
    """Rows (and columns) of the patch grid in the central window."""
    lo = (GRID - CENTER) // 2
    return slice(lo, lo + CENTER)
