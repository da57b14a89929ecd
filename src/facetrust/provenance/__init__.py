"""Evidence beyond pixels: C2PA content credentials, invisible watermarks, generator metadata.

Reads bytes and metadata only; knows no faces and no models. ``read_provenance(file)`` gives a
:class:`Provenance` (a list of :class:`Evidence` items plus per-item notes);
:func:`file_verdict` combines it with a pixel label by the rule written in the README.
"""

from facetrust.provenance.reader import read_provenance
from facetrust.provenance.types import (
    STRENGTH_WORDS,
    Evidence,
    Provenance,
    ProvenanceLimits,
)
from facetrust.provenance.verdict import (
    FileVerdict,
    ProvenanceReport,
    file_verdict,
    provenance_report,
)

__all__ = [
    "STRENGTH_WORDS",
    "Evidence",
    "FileVerdict",
    "Provenance",
    "ProvenanceLimits",
    "ProvenanceReport",
    "file_verdict",
    "provenance_report",
    "read_provenance",
]
