"""MobileNetV2 (Sandler et al., 2018): inverted residuals with linear bottlenecks.

State_dict keys and shapes are those of torchvision's ``mobilenet_v2``, so its checkpoints load strictly.
"""
from __future__ import annotations

from torch import nn

from .blocks import ConvBNAct, InvertedResidual, MobileNet, Padding, classifier_head, init_weights, make_divisible

# t: expansion factor, c: output channels, n: repeats, s: stride of the first repeat (paper, Table 2).
SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class MobileNetV2(MobileNet):
    final_layer = "classifier.1"

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                 padding: Padding = "torch"):
        super().__init__()
        in_channels = make_divisible(32 * width_mult)
        self.num_features = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNAct(3, in_channels, stride=2, padding=padding)]
        for t, c, n, s in SETTINGS:
            out_channels = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(in_channels, out_channels, s if i == 0 else 1, t, padding))
                in_channels = out_channels
        layers.append(ConvBNAct(in_channels, self.num_features, kernel_size=1))
        self.features = nn.Sequential(*layers)
        self.classifier = classifier_head(self.num_features, num_classes, dropout)
        init_weights(self)


def build(name: str, **kwargs) -> MobileNetV2:
    """MobileNetV2 with a width multiplier (0.35 to 1.4); the heart of mobiclass."""
    return MobileNetV2(**kwargs)
