"""Container metadata of videos (tags such as ``encoder``, ``software``, ``comment``), read
with PyAV without decoding a frame."""

from __future__ import annotations

import io

from facetrust.provenance.metadata import tool_claim
from facetrust.provenance.types import Evidence, ProvenanceLimits, shorten

__all__ = ["read_video_tags"]

_SOFTWARE_TAGS = ("encoder", "software", "com.apple.quicktime.software", "creation_tool", "comment")


def read_video_tags(
    data: bytes, fmt: str, limits: ProvenanceLimits, notes: list[str]
) -> tuple[list[Evidence], dict[str, str]]:
    """Evidence and descriptive fields from the container and stream tags of a video."""
    import av

    fields: dict[str, str] = {}
    try:
        with av.open(io.BytesIO(data), mode="r", format=fmt) as container:
            tags = dict(container.metadata or {})
            for s in list(container.streams)[:8]:
                for k, v in (s.metadata or {}).items():
                    tags.setdefault(f"stream {k}", v)
    except Exception as e:  # noqa: BLE001 - PyAV raises many types on hostile containers
        notes.append(f"metadata: cannot read the video container tags ({shorten(str(e), 120)})")
        return [], fields
    for i, (k, v) in enumerate(tags.items()):
        if i >= limits.max_blocks:
            notes.append(f"metadata: more than {limits.max_blocks} container tags; rest skipped")
            break
        fields[shorten(str(k), 60)] = shorten(str(v), 120)
    ev: list[Evidence] = []
    for key in _SOFTWARE_TAGS:
        for k in (key, f"stream {key}"):
            value = fields.get(k)
            hit = tool_claim(value) if value else None
            if hit and not any(hit[0] in e.claim for e in ev):
                ev.append(
                    Evidence(
                        kind="metadata",
                        claim=hit[1],
                        generative=hit[2],
                        source=f"video container tag '{k}'",
                        strength="metadata",
                        raw={"tag": k, "value": value},
                    )
                )
    return ev, fields
