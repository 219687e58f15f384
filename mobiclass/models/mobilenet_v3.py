"""MobileNetV3 (Howard et al., 2019): V2's blocks found by search, with squeeze-excitation and hard-swish.

State_dict keys and shapes are those of torchvision's ``mobilenet_v3_large`` / ``mobilenet_v3_small``.
"""
from __future__ import annotations


import torch
from torch import nn

from .blocks import ConvBNAct, MobileNet, Padding, SqueezeExcitation, init_weights, make_divisible

# k: kernel, e: expanded channels, c: output channels, se: squeeze-excitation, hs: hard-swish, s: stride
# (paper, Tables 1 and 2).
LARGE = [
    # k, e,  c,  se,    hs,    s
    (3, 16, 16, False, False, 1),
    (3, 64, 24, False, False, 2),
    (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2),
    (5, 120, 40, True, False, 1),
    (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2),
    (3, 200, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 480, 112, True, True, 1),
    (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2),
    (5, 960, 160, True, True, 1),
    (5, 960, 160, True, True, 1),
]
SMALL = [
    (3, 16, 16, True, False, 2),
    (3, 72, 24, False, False, 2),
    (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2),
    (5, 240, 40, True, True, 1),
    (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1),
    (5, 144, 48, True, True, 1),
    (5, 288, 96, True, True, 2),
    (5, 576, 96, True, True, 1),
    (5, 576, 96, True, True, 1),
]


class InvertedResidualSE(nn.Module):
    """V3's inverted residual: optional SE after the depthwise stage (layout ``block.N``)."""

    def __init__(self, in_channels: int, kernel: int, expanded: int, out_channels: int, use_se: bool,
                 activation: type[nn.Module], stride: int, padding: Padding):
        super().__init__()
        norm = dict(bn_eps=1e-3, bn_momentum=0.01, padding=padding)
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expanded != in_channels:
            layers.append(ConvBNAct(in_channels, expanded, kernel_size=1, activation=activation, **norm))
        layers.append(ConvBNAct(expanded, expanded, kernel, stride, groups=expanded, activation=activation, **norm))
        if use_se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4)))
        layers.append(ConvBNAct(expanded, out_channels, kernel_size=1, activation=None, **norm))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_residual else self.block(x)


class MobileNetV3(MobileNet):
    final_layer = "classifier.3"

    def __init__(self, settings: list[tuple], last_channel: int, num_classes: int = 1000, width_mult: float = 1.0,
                 dropout: float = 0.2, padding: Padding = "torch"):
        super().__init__()
        norm = dict(bn_eps=1e-3, bn_momentum=0.01, padding=padding)
        in_channels = make_divisible(16 * width_mult)
        layers: list[nn.Module] = [ConvBNAct(3, in_channels, stride=2, activation=nn.Hardswish, **norm)]
        for k, e, c, se, hs, s in settings:
            out_channels = make_divisible(c * width_mult)
            layers.append(InvertedResidualSE(in_channels, k, make_divisible(e * width_mult), out_channels, se,
                                             nn.Hardswish if hs else nn.ReLU, s, padding))
            in_channels = out_channels
        layers.append(ConvBNAct(in_channels, 6 * in_channels, kernel_size=1, activation=nn.Hardswish, **norm))
        self.features = nn.Sequential(*layers)
        self.num_features = 6 * in_channels
        last_channel = make_divisible(last_channel * width_mult)
        self.classifier = nn.Sequential(nn.Linear(self.num_features, last_channel), nn.Hardswish(inplace=True),
                                        nn.Dropout(p=dropout, inplace=True), nn.Linear(last_channel, num_classes))
        init_weights(self)


def build(name: str, **kwargs) -> MobileNetV3:
    """MobileNetV3-Large (higher accuracy than V2 at lower latency on phones) or -Small (the tightest budgets)."""
    settings, last_channels = {"mobilenet_v3_large": (LARGE, 1280), "mobilenet_v3_small": (SMALL, 1024)}[name]
    return MobileNetV3(settings, last_channels, **kwargs)


