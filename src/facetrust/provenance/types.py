"""What provenance reading returns: evidence items, the file's provenance, the limits it honours.

These pydantic models are the one definition of the JSON the library, the CLI (``--json``) and
the API (``/v1/provenance``, and a ``provenance`` key in detection results) carry, by
``model_dump(mode="json")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from facetrust.errors import InputError

__all__ = ["Evidence", "EvidenceKind", "Provenance", "ProvenanceLimits", "Strength"]

EvidenceKind = Literal["c2pa", "watermark", "metadata"]

#: How much an evidence item can be relied on, strongest first:
#: ``signed-valid`` a C2PA signature that validates and chains to a configured trust anchor;
#: ``signed-untrusted`` a signature that validates but whose signer is on no trust list (anyone
#: can make such a certificate); ``signed-invalid`` credentials that fail validation (the file
#: or the manifest was changed after signing, or the store is malformed); ``embedded`` a payload
#: hidden in the pixels (an invisible watermark); ``metadata`` plain, unsigned fields that any
#: tool can write, copy or strip.
Strength = Literal["signed-valid", "signed-untrusted", "signed-invalid", "embedded", "metadata"]


class Evidence(BaseModel):
    """One thing the file says about where it came from."""

    kind: EvidenceKind = Field(description="c2pa, watermark or metadata")
    claim: str = Field(description='what is claimed, e.g. "created by a generative model"')
    generative: bool = Field(
        description="the claim says a generative AI model made or changed the content"
    )
    source: str = Field(description="who says so: signer, tool, field or chunk name")
    strength: Strength = Field(
        description="signed-valid, signed-untrusted, signed-invalid, embedded or metadata"
    )
    raw: dict[str, Any] = Field(
        default_factory=dict, description="the values a reviewer needs (shortened)"
    )


class Provenance(BaseModel):
    """Everything read from a file's bytes and metadata, beside (never inside) the pixel score.

    An empty ``evidence`` list means nothing was found, not that the file is authentic: most
    platforms strip metadata and credentials on upload.
    """

    media: Literal["image", "video"] | None = Field(None, description="by content")
    format: str | None = Field(None, description="container format, e.g. PNG, JPEG, mov")
    evidence: list[Evidence] = Field(default_factory=list)
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="descriptive metadata read on the way (Software, Make, Model, ...), shortened",
    )
    checked: list[str] = Field(
        default_factory=list, description="checks that ran: c2pa, watermark, metadata"
    )
    not_applicable: list[str] = Field(
        default_factory=list, description="checks that do not apply to this file, e.g. watermark"
    )
    notes: list[str] = Field(
        default_factory=list,
        description="per-item notes: what could not be read and why (never a failure)",
    )

    @property
    def generative(self) -> list[Evidence]:
        """Evidence items whose claim says a generative model was involved."""
        return [e for e in self.evidence if e.generative]

    def summary(self) -> str:
        """One short line for tables: the strongest items, or ``none found``."""
        if not self.evidence:
            return "none found"
        order = {s: i for i, s in enumerate(Strength.__args__)}  # type: ignore[attr-defined]
        items = sorted(self.evidence, key=lambda e: (order[e.strength], not e.generative))
        return "; ".join(f"{e.kind}: {e.claim} [{STRENGTH_WORDS[e.strength]}]" for e in items)


#: How each strength is shown to people: untrusted and invalid credentials are never "signed".
STRENGTH_WORDS: dict[str, str] = {
    "signed-valid": "signed, trusted",
    "signed-untrusted": "UNTRUSTED signer",
    "signed-invalid": "INVALID credentials",
    "embedded": "embedded watermark",
    "metadata": "unsigned metadata",
}


@dataclass(frozen=True)
class ProvenanceLimits:
    """Bounds on how much is read, so that hostile files cost little and never crash.

    ``max_bytes`` bounds the whole file; ``max_text_bytes`` one metadata text (a PNG text chunk
    after decompression, an XMP packet, an EXIF block); ``max_blocks`` the number of metadata
    blocks (chunks, segments) looked at; ``prompt_chars`` how much of a prompt is kept;
    ``max_watermark_pixels`` the largest image the watermark decoder runs on.
    """

    max_bytes: int = 200 * 1024 * 1024
    max_text_bytes: int = 256 * 1024
    max_blocks: int = 4096
    prompt_chars: int = 200
    max_watermark_pixels: int = 50_000_000

    def __post_init__(self) -> None:
        for name in (
            "max_bytes",
            "max_text_bytes",
            "max_blocks",
            "prompt_chars",
            "max_watermark_pixels",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InputError(f"ProvenanceLimits.{name} must be a positive int, got {value!r}")


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters (an ellipsis marks a cut)."""
    s = " ".join(str(text).split())
    s = "".join(ch if ch.isprintable() else "?" for ch in s)
    return s if len(s) <= limit else s[: max(limit - 1, 0)] + "…"
