"""EfficientNet-Lite in plain torch, module for module timm's ``tf_efficientnet_lite*``.

Importing timm imports torchvision, and torchvision's ops import ``torch._dynamo`` (about 2 s
of CPU at start-up); the shipped detectors are EfficientNet-Lite0, so inference builds them
here instead. The modules carry timm's names (``conv_stem``, ``bn1``, ``blocks.S.B.conv_pw``,
..., ``conv_head``, ``bn2``, ``classifier``) and compute the same thing (TensorFlow "SAME"
padding on strided convolutions, BatchNorm eps 1e-3 fused with ReLU6, stochastic depth growing
with the block index, TF-style initialisation), so checkpoints and ImageNet weights made with
timm load unchanged and give the same logits (a test compares both, timm being installed).

Input ``[B, 3, H, W]``; output ``[B, num_classes]`` logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# (block kind, repeats, kernel, stride, expansion, out channels) of tf_efficientnet_lite0
LITE0_STAGES: tuple[tuple[str, int, int, int, int, int], ...] = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon


def _same_pad(size: int, kernel: int, stride: int) -> int:
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


class Conv2dSame(nn.Conv2d):
    """A convolution with TensorFlow's "SAME" padding (extra row/column at the bottom/right)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride, 0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        ph = _same_pad(int(ih), self.kernel_size[0], self.stride[0])
        pw = _same_pad(int(iw), self.kernel_size[1], self.stride[1])
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """ "SAME" padding: symmetric (a plain Conv2d) at stride 1, asymmetric (Conv2dSame) at 2."""
    if stride == 1:
        return nn.Conv2d(cin, cout, kernel, 1, (kernel - 1) // 2, groups=groups, bias=False)
    return Conv2dSame(cin, cout, kernel, stride, groups=groups)


class BatchNormAct2d(nn.BatchNorm2d):
    """BatchNorm followed by ReLU6 (or nothing): timm's ``BatchNormAct2d``, same state dict."""

    def __init__(self, channels: int, act: bool = True) -> None:
        super().__init__(channels, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability ``p`` in training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep) if keep > 0.0 else x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class DepthwiseSeparableConv(nn.Module):
    """Depthwise conv + BN-ReLU6, pointwise conv + BN; a residual when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, drop_path: float) -> None:
        super().__init__()
        self.has_skip = stride == 1 and cin == cout
        self.conv_dw = _conv(cin, cin, kernel, stride, groups=cin)
        self.bn1 = BatchNormAct2d(cin)
        self.conv_pw = _conv(cin, cout, 1)
        self.bn2 = BatchNormAct2d(cout, act=False)
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_pw(self.bn1(self.conv_dw(x))))
        return self.drop_path(y) + x if self.has_skip else y


class InvertedResidual(nn.Module):
    """Pointwise expansion, depthwise conv, linear projection (MobileNetV2 block, no SE)."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, expand: int, drop_path: float
    ) -> None:
        super().__init__()
        mid = cin * expand
        self.has_skip = stride == 1 and cin == cout
        self.conv_pw = _conv(cin, mid, 1)
        self.bn1 = BatchNormAct2d(mid)
        self.conv_dw = _conv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = BatchNormAct2d(mid)
        self.conv_pwl = _conv(mid, cout, 1)
        self.bn3 = BatchNormAct2d(cout, act=False)
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))
        y = self.bn3(self.conv_pwl(y))
        return self.drop_path(y) + x if self.has_skip else y


class PooledClassifier:
    """timm's head interface for a network with ``forward_features``, ``global_pool``,
    ``drop_rate`` and ``classifier``: pooled features -> dropout -> logits (mixed into
    ``EfficientNetLite`` and ``facetrust.models.attention.AttentionEfficientNet``)."""

    global_pool: nn.Module
    classifier: nn.Module
    drop_rate: float
    training: bool

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier


class EfficientNetLite(PooledClassifier, nn.Module):
    """EfficientNet-Lite (width multiplier 1.0: Lite0): stem, 7 stages, 1x1 head, pooled logits.

    ``drop_rate``: dropout before the classifier; ``drop_path_rate``: stochastic depth of the
    last block (block i of n gets ``drop_path_rate * i / n``), as timm.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        stages: tuple[tuple[str, int, int, int, int, int], ...] = LITE0_STAGES,
        stem: int = 32,
        num_features: int = 1280,
    ) -> None:
        super().__init__()
        if not 0.0 <= drop_rate < 1.0 or not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop rates must be in [0, 1), got {drop_rate}, {drop_path_rate}")
        self.num_classes = num_classes
        self.num_features = num_features
        self.drop_rate = float(drop_rate)
        self.conv_stem = _conv(3, stem, 3, 2)
        self.bn1 = BatchNormAct2d(stem)
        total = sum(s[1] for s in stages)
        cin, index, blocks = stem, 0, []
        for kind, repeats, kernel, stride, expand, cout in stages:
            stage = []
            for r in range(repeats):
                dp = drop_path_rate * index / total
                s = stride if r == 0 else 1
                if kind == "ds":
                    stage.append(DepthwiseSeparableConv(cin, cout, kernel, s, dp))
                else:
                    stage.append(InvertedResidual(cin, cout, kernel, s, expand, dp))
                cin, index = cout, index + 1
            blocks.append(nn.Sequential(*stage))
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = _conv(cin, num_features, 1)
        self.bn2 = BatchNormAct2d(num_features)
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.classifier = nn.Linear(num_features, num_classes)
        for m in self.modules():
            _init_tf(m)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes)
        _init_tf(self.classifier)


def _init_tf(m: nn.Module) -> None:
    """TensorFlow EfficientNet initialisation (timm's ``_init_weight_goog``)."""
    if isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear):
        r = 1.0 / math.sqrt(m.weight.size(0))
        nn.init.uniform_(m.weight, -r, r)
        nn.init.zeros_(m.bias)
