"""Photo protection: landmark micro-warp + PGD with EoT over an encoder ensemble.

>>> from facetrust.protect import Protector
>>> result = Protector("medium")("selfie.jpg")     # doctest: +SKIP
>>> result.save("safe.png"); result.report["identity_band"]    # doctest: +SKIP

The attack never sees the judge (dlib's face descriptor, :class:`DlibJudge`), which decides in
``benchmarks/protect.py`` whether protection works.
"""

from facetrust.protect.attack import PGD, PGDConfig
from facetrust.protect.eot import EoT, EoTConfig, TransformSample
from facetrust.protect.jpeg import DiffJPEG, diff_jpeg
from facetrust.protect.metrics import identity_band, psnr, ssim
from facetrust.protect.protector import STRENGTHS, Protector, ProtectResult

__all__ = [
    "PGD",
    "STRENGTHS",
    "DiffJPEG",
    "EoT",
    "EoTConfig",
    "PGDConfig",
    "ProtectResult",
    "Protector",
    "TransformSample",
    "diff_jpeg",
    "identity_band",
    "psnr",
    "ssim",
]
