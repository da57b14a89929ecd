"""Names shared by the library, the command line and the API, defined once.

``ProtectPreset``: the photo-protection presets, by what a person sees on the face (their
budgets live in :data:`facetrust.protect.budget.PRESETS`, keyed by these names).
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["DEFAULT_PROTECT_PRESET", "PROTECT_PRESETS", "ProtectPreset"]

ProtectPreset = Literal["subtle", "balanced", "strong"]
PROTECT_PRESETS: tuple[str, ...] = get_args(ProtectPreset)
DEFAULT_PROTECT_PRESET: ProtectPreset = "subtle"
