"""Models: a registry of architectures, offline ImageNet weights, self-describing checkpoints.

>>> model = create_model("tiny_cnn")            # one "fake" logit per image: [B, 1]
>>> model_info("efficientnet_lite0").mean       # preprocessing travels with the name
(0.5, 0.5, 0.5)
"""

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
