"""The protect report: what the cloak did, in figures and in plain words (a pydantic model).

``face_ssim`` and ``face_psnr`` are measured on the face region (the pixels where the face's
feathered mask is at least 0.5; the worst face when there are several) of the saved 8-bit
image against the original; ``visibility`` is the word :func:`.metrics.visibility` gives for
them. ``judge`` is dlib's face recognizer (never attacked): as saved and after a JPEG quality
75 round trip, with one word for the latter (:func:`protection_word`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["JudgeReport", "JudgeVerdict", "ProtectReport", "protection_word"]

#: dlib descriptor distance after JPEG 75 -> word: at or above the match threshold (0.6) dlib
#: takes the photo for another person; between 0.45 and 0.6 it still matches, with less margin.
PROTECTION_WORDS = (("protected", 0.6), ("weak", 0.45), ("none", 0.0))


def protection_word(distance: float | None, threshold: float = 0.6) -> str:
    """``protected`` (dlib no longer matches), ``weak`` or ``none``; ``undecided`` without a
    distance (dlib found no face in the original)."""
    if distance is None:
        return "undecided"
    if distance >= threshold:
        return "protected"
    return "weak" if distance >= PROTECTION_WORDS[1][1] else "none"


class JudgeVerdict(BaseModel):
    """dlib's verdict on one version of the protected photo."""

    match: bool | None = Field(description="dlib still takes it for the same person")
    distance: float | None = Field(description="descriptor distance to the original")
    threshold: float
    original_detected: bool
    protected_detected: bool
    message: str


class JudgeReport(BaseModel):
    """The judge (dlib's face descriptor, never attacked), as saved and after JPEG 75."""

    saved: JudgeVerdict
    jpeg75: JudgeVerdict
    protection: Literal["protected", "weak", "none", "undecided"] = Field(
        description="one word for the protection after JPEG 75"
    )
    message: str


class ProtectReport(BaseModel):
    """Figures and words for one protected photo (see :class:`~facetrust.protect.Protector`)."""

    model_config = ConfigDict(extra="forbid")

    width: int
    height: int
    faces: int = Field(description="faces found")
    face_boxes: list[list[float]]
    regions: Literal["faces", "whole_image", "none"]
    strength: str = Field(description="preset name, or 'custom'")
    budget_ssim: float = Field(description="face-region SSIM target")
    budget_psnr: float = Field(description="face-region PSNR target, dB")
    face_ssim: float | None = Field(None, description="face-region SSIM of the saved image")
    face_psnr: float | None = Field(None, description="face-region PSNR, dB (None: unchanged)")
    visibility: str = Field(description="what a person sees, from face_ssim and face_psnr")
    psnr: float | None = Field(None, description="whole-image PSNR, dB (None: unchanged)")
    ssim: float = Field(description="whole-image SSIM")
    linf: int = Field(0, description="largest change by the cloak, 8-bit levels")
    linf_total: int = Field(0, description="largest change including the warp")
    eps: float = Field(description="the cloak's L-infinity cap, 8-bit levels")
    steps: int
    eot_samples: int
    target_weight: float = Field(
        0.0, description="pull towards another (synthetic) identity; 0: away from the original"
    )
    warp_px: float
    encoders: list[str]
    identity_stability: float | None = Field(
        None, description="mean cosine similarity original vs protected in the attacked encoders"
    )
    identity_band: str | None = None
    identity_per_encoder: dict[str, float] = Field(default_factory=dict)
    identity_stability_jpeg75: float | None = None
    judge: JudgeReport | None = None
    judge_error: str | None = Field(None, description="why the judge could not run")
    seconds: float
    seconds_attack: float | None = None
    seconds_setup: float | None = None
    message: str

    def summary(self) -> str:
        """One plain line: visibility, the face figures and the judge's word."""
        if self.regions == "none":
            return self.message
        parts = [self.message]
        if self.face_psnr is not None:
            parts.append(
                f"{self.visibility} (face SSIM {self.face_ssim:.3f}, PSNR {self.face_psnr:.1f} dB)"
            )
        if self.judge is not None:
            d = self.judge.jpeg75.distance
            dist = "no decision" if d is None else f"distance {d:.2f}, match below 0.60"
            parts.append(f"against dlib after JPEG 75: {self.judge.protection} ({dist})")
        elif self.judge_error:
            parts.append(f"judge unavailable: {self.judge_error}")
        return "; ".join(parts)
