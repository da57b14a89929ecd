"""Link faces across sampled video frames into tracks, and aggregate scores per track/video."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Box = tuple[float, float, float, float]


@dataclass
class Track:
    id: int
    members: list[tuple[int, int]] = field(default_factory=list)  # (frame position, face index)
    last_box: Box = (0.0, 0.0, 0.0, 0.0)
    last_pos: int = -1


def _match_cost(a: Box, b: Box) -> float:
    """Distance between box centres in units of the mean face size (0 = same place)."""
    ca = np.array([(a[0] + a[2]) / 2, (a[1] + a[3]) / 2])
    cb = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
    size = max((a[2] - a[0] + a[3] - a[1] + b[2] - b[0] + b[3] - b[1]) / 4, 1e-6)
    scale = max(a[2] - a[0], b[2] - b[0]) / max(min(a[2] - a[0], b[2] - b[0]), 1e-6)
    return float(np.linalg.norm(ca - cb) / size) + 0.5 * (scale - 1.0)


def link_tracks(frames: list[list[Box]], max_cost: float = 1.0, max_gap: int = 2) -> list[Track]:
    """Greedy linking: each face joins the cheapest open track (cost below ``max_cost``, seen at
    most ``max_gap`` sampled frames ago), else starts a new track. Sampled frames can be far
    apart in time, so matching uses centre distance relative to face size, not IoU alone."""
    tracks: list[Track] = []
    for pos, boxes in enumerate(frames):
        open_tracks = [t for t in tracks if 0 < pos - t.last_pos <= max_gap]
        pairs = sorted(
            (_match_cost(t.last_box, b), ti, fi)
            for ti, t in enumerate(open_tracks)
            for fi, b in enumerate(boxes)
        )
        used_t: set[int] = set()
        used_f: set[int] = set()
        for cost, ti, fi in pairs:
            if cost > max_cost or ti in used_t or fi in used_f:
                continue
            t = open_tracks[ti]
            t.members.append((pos, fi))
            t.last_box, t.last_pos = boxes[fi], pos
            used_t.add(ti)
            used_f.add(fi)
        for fi, b in enumerate(boxes):
            if fi not in used_f:
                tracks.append(Track(id=len(tracks), members=[(pos, fi)], last_box=b, last_pos=pos))
    return tracks
