"""Photo protection: a cloak (PGD with EoT over an encoder ensemble) within a budget of what the
eye sees on the face.

>>> from facetrust.protect import Protector
>>> result = Protector("subtle")("selfie.jpg")     # doctest: +SKIP
>>> result.save("safe.png"); print(result.report.summary())    # doctest: +SKIP

The attack never sees the judge (dlib's face descriptor, :class:`DlibJudge`), which decides in
``benchmarks/protect.py`` (and in the report, with ``judge=True``) whether protection works.
"""

from facetrust.extras import require as _require

_require("protect")

from facetrust.protect.attack import PGD, PGDConfig
from facetrust.protect.budget import DEFAULT_PRESET, PRESET_NAMES, PRESETS, Budget, CloakShape
from facetrust.protect.eot import EoT, EoTConfig, TransformSample
from facetrust.protect.jpeg import DiffJPEG, diff_jpeg
from facetrust.protect.metrics import identity_band, psnr, ssim, visibility
from facetrust.protect.protector import NO_FACE_MESSAGE, Protector, ProtectResult
from facetrust.protect.report import ProtectReport

__all__ = [
    "DEFAULT_PRESET",
    "NO_FACE_MESSAGE",
    "PGD",
    "PRESETS",
    "PRESET_NAMES",
    "Budget",
    "CloakShape",
    "DiffJPEG",
    "EoT",
    "EoTConfig",
    "PGDConfig",
    "ProtectReport",
    "ProtectResult",
    "Protector",
    "TransformSample",
    "diff_jpeg",
    "identity_band",
    "psnr",
    "ssim",
    "visibility",
]
