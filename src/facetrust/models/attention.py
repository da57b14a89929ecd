"""Spatial attention for face-forgery CNNs, and the tiny test architectures.

``AttentionEfficientNet`` follows the idea of EfficientNetAutoAttB4 (Bonettini et al., "Video
Face Manipulation Detection Through Ensemble of CNNs", ICPR 2020): after an intermediate stage,
a small convolution produces a one-channel map, a sigmoid turns it into weights in (0, 1), and
the features are multiplied by it before the rest of the network runs. The map can be read back
with ``get_attention`` to show where the network looks.

The EfficientNet here is timm's: its modules are reused as they are, under the same names, so
timm-named (ImageNet) weights load directly; only ``attention`` is new.
"""

from __future__ import annotations

import torch
from torch import nn

from facetrust.models.efficientnet_lite import PooledClassifier


class SpatialAttention(nn.Module):
    """Gate features with a learned one-channel map: ``x * sigmoid(conv(x))``.

    With ``width == 0`` the map is a 1x1 convolution of the features; with ``width > 0`` a 3x3
    convolution to ``width`` channels and a ReLU come first.

    Input ``[B, C, H, W]``; output ``[B, C, H, W]``; ``attention_map`` gives ``[B, 1, H, W]``.
    """

    def __init__(self, channels: int, width: int = 0) -> None:
        super().__init__()
        if channels < 1 or width < 0:
            raise ValueError(f"channels must be >= 1 and width >= 0, got {channels}, {width}")
        self.channels = channels
        self.width = width
        if width:
            self.conv = nn.Sequential(
                nn.Conv2d(channels, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, 1, 1),
            )
        else:
            self.conv = nn.Conv2d(channels, 1, 1)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The gate in (0, 1), ``[B, 1, H, W]``."""
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected [B, {self.channels}, H, W] features, got {tuple(x.shape)}")
        return torch.sigmoid(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, width={self.width}"


def _stage_channels(stage: nn.Module) -> int:
    """Output channels of a timm EfficientNet stage (its last block's last BatchNorm)."""
    last = list(stage.children())[-1]
    bns = [m for m in last.modules() if isinstance(m, nn.BatchNorm2d)]
    return bns[-1].num_features


class AttentionEfficientNet(PooledClassifier, nn.Module):
    """A timm ``EfficientNet`` with a ``SpatialAttention`` gate after stage ``att_stage``.

    The timm model's modules are adopted under their own names (``conv_stem``, ``bn1``,
    ``blocks``, ``conv_head``, ``bn2``, ``global_pool``, ``classifier``).
    Input ``[B, 3, H, W]``; output logits ``[B, num_classes]``.
    """

    fresh_modules = ("attention",)  # not covered by ImageNet weights

    def __init__(self, base: nn.Module, att_stage: int = 2, att_width: int = 0) -> None:
        super().__init__()
        n_stages = len(base.blocks)
        if not 0 <= att_stage < n_stages - 1:
            raise ValueError(f"att_stage must be in 0..{n_stages - 2}, got {att_stage}")
        self.conv_stem = base.conv_stem
        self.bn1 = base.bn1
        self.blocks = base.blocks
        self.conv_head = base.conv_head
        self.bn2 = base.bn2
        self.global_pool = base.global_pool
        self.classifier = base.classifier
        self.drop_rate = float(base.drop_rate)
        self.num_features = base.num_features
        self.num_classes = base.num_classes
        self.att_stage = att_stage
        self.attention = SpatialAttention(_stage_channels(base.blocks[att_stage]), att_width)

    def _stem_to_attention(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv_stem(x))
        for stage in self.blocks[: self.att_stage + 1]:
            x = stage(x)
        return x

    def get_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Attention map in (0, 1) for images ``[B, 3, H, W]``: ``[B, 1, H/8, W/8]`` or so."""
        return self.attention.attention_map(self._stem_to_attention(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention(self._stem_to_attention(x))
        for stage in self.blocks[self.att_stage + 1 :]:
            x = stage(x)
        return self.bn2(self.conv_head(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a fresh ``Linear(num_features, num_classes)``."""
        self.num_classes = num_classes
        self.classifier = (
            nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        )


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class TinyCNN(nn.Module):
    """A four-layer CNN (~33k parameters) for tests; any input of 32 px or more.

    Stages (``blocks.0`` .. ``blocks.3``) halve the resolution; with ``att_stage`` set, a
    ``SpatialAttention`` gate follows that stage. Input ``[B, 3, H, W]``; output
    ``[B, num_classes]``.
    """

    widths = (16, 32, 32, 64)

    def __init__(
        self,
        num_classes: int = 1,
        att_stage: int | None = None,
        att_width: int = 0,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if att_stage is not None and not 0 <= att_stage < len(self.widths) - 1:
            raise ValueError(f"att_stage must be in 0..{len(self.widths) - 2}, got {att_stage}")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        chans = (3, *self.widths)
        self.blocks = nn.Sequential(
            *(_conv_bn_relu(chans[i], chans[i + 1], 2) for i in range(len(self.widths)))
        )
        self.att_stage = att_stage
        self.attention = (
            SpatialAttention(self.widths[att_stage], att_width) if att_stage is not None else None
        )
        self.num_features = self.widths[-1]
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.num_features, num_classes)

    def _to_attention(self, x: torch.Tensor) -> torch.Tensor:
        if self.att_stage is None:
            raise ValueError("this TinyCNN has no attention block (att_stage=None)")
        for stage in self.blocks[: self.att_stage + 1]:
            x = stage(x)
        return x

    def get_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Attention map in (0, 1), ``[B, 1, h, w]``; only when built with ``att_stage``."""
        x = self._to_attention(x)
        assert self.attention is not None
        return self.attention.attention_map(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-1] < 32 or x.shape[-2] < 32:
            raise ValueError(f"expected [B, 3, H, W] with H, W >= 32, got {tuple(x.shape)}")
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if i == self.att_stage and self.attention is not None:
                x = self.attention(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.global_pool(self.forward_features(x)).flatten(1)
        if self.drop_rate > 0.0:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        return self.classifier(x)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a fresh ``Linear(num_features, num_classes)``."""
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes)
