"""Models: a registry of architectures, offline ImageNet weights, self-describing checkpoints.

>>> model = create_model("tiny_cnn")            # one "fake" logit per image: [B, 1]
>>> model_info("efficientnet_lite0").mean       # preprocessing travels with the name
(0.5, 0.5, 0.5)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from facetrust.models.checkpoint import (
        CheckpointMeta,
        load_checkpoint,
        read_checkpoint_meta,
        save_checkpoint,
    )
    from facetrust.models.registry import (
        ModelInfo,
        create_model,
        list_architectures,
        model_info,
        register_model,
    )
    from facetrust.models.zoo import ShippedModel, list_models, resolve_model, shipped_models

# Names are imported on first use (PEP 562): reading a checkpoint's metadata or resolving a
# shipped model's name must not import torch (the registry does), so that the ONNX Runtime
# path of ``facetrust detect`` starts without it.
_LAZY = {
    "CheckpointMeta": "checkpoint",
    "load_checkpoint": "checkpoint",
    "read_checkpoint_meta": "checkpoint",
    "save_checkpoint": "checkpoint",
    "ModelInfo": "registry",
    "create_model": "registry",
    "list_architectures": "registry",
    "model_info": "registry",
    "register_model": "registry",
    "ShippedModel": "zoo",
    "list_models": "zoo",
    "resolve_model": "zoo",
    "shipped_models": "zoo",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'facetrust.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"facetrust.models.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CheckpointMeta",
    "ModelInfo",
    "ShippedModel",
    "create_model",
    "list_architectures",
    "list_models",
    "load_checkpoint",
    "model_info",
    "read_checkpoint_meta",
    "register_model",
    "resolve_model",
    "shipped_models",
    "save_checkpoint",
]
