"""The file-level verdict: the pixel label combined with provenance by one stated rule.

1. A C2PA claim of generative creation whose signature validates and chains to a trusted
   signer (``signed-valid``) gives ``ai_declared``, whatever the pixels say.
2. Otherwise, any other evidence claiming a generative model (an untrusted C2PA signer, the
   Stable Diffusion watermark, generator metadata) gives ``ai_indicated``: likely, but unsigned
   or unverified (such fields can be written or copied by anyone).
3. Otherwise the pixel label stands: ``fake``, ``uncertain``, ``real`` or ``no_face``
   (``unknown`` without one).

Invalid credentials (``signed-invalid``) never raise or lower the verdict: they are reported
(the file changed after signing). A camera-capture claim never turns ``fake`` into ``real``.
Absence of evidence is never evidence of authenticity: most platforms strip metadata and
credentials, so ``real`` always comes from the pixels alone. The pixel probability is never
changed by any of this.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from facetrust.provenance.types import Provenance

__all__ = ["FileVerdict", "ProvenanceReport", "VerdictLabel", "file_verdict", "provenance_report"]

VerdictLabel = Literal[
    "ai_declared", "ai_indicated", "fake", "uncertain", "real", "no_face", "unknown"
]


class FileVerdict(BaseModel):
    verdict: VerdictLabel = Field(
        description="ai_declared, ai_indicated, fake, real, no_face or unknown"
    )
    reason: str = Field(description="which rule gave the verdict")


def file_verdict(pixel_label: str | None, provenance: Provenance | None) -> FileVerdict:
    """Combine a pixel label (``real``, ``fake``, ``uncertain``, ``no_face`` or None) with
    provenance."""
    gen = provenance.generative if provenance is not None else []
    signed = [e for e in gen if e.kind == "c2pa" and e.strength == "signed-valid"]
    if signed:
        return FileVerdict(
            verdict="ai_declared",
            reason=f"trusted C2PA credentials say: {signed[0].claim} ({signed[0].source})",
        )
    other = [e for e in gen if e.strength != "signed-invalid"]
    if other:
        e = other[0]
        return FileVerdict(
            verdict="ai_indicated",
            reason=f"{e.kind} ({e.strength}) says: {e.claim}; unverified",
        )
    if pixel_label in ("real", "fake", "uncertain", "no_face"):
        return FileVerdict(verdict=pixel_label, reason="pixels only: no generative claim found")
    return FileVerdict(verdict="unknown", reason="no pixel label and no generative claim")


class ProvenanceReport(Provenance):
    """A file's provenance with the verdict it supports on its own (no pixel label): what
    ``facetrust provenance --json`` prints and ``/v1/provenance`` answers."""

    verdict: FileVerdict


def provenance_report(provenance: Provenance, pixel_label: str | None = None) -> ProvenanceReport:
    """``provenance`` with its :func:`file_verdict` attached."""
    return ProvenanceReport(
        **provenance.model_dump(), verdict=file_verdict(pixel_label, provenance)
    )
