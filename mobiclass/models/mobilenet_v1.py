"""MobileNetV1 (Howard et al., 2017): a plain stack of depthwise separable convolutions."""
from __future__ import annotations

from torch import nn

from .blocks import ConvBNAct, MobileNet, Padding, classifier_head, init_weights

# c: output channels of the pointwise convolution, s: stride of the depthwise one (paper, Table 1).
SETTINGS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
            (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


def depthwise_separable(in_channels: int, out_channels: int, stride: int, padding: Padding) -> nn.Sequential:
    """A 3x3 depthwise convolution (one filter per channel) then a 1x1 pointwise one mixing channels."""
    return nn.Sequential(ConvBNAct(in_channels, in_channels, stride=stride, groups=in_channels, padding=padding),
                         ConvBNAct(in_channels, out_channels, kernel_size=1))


class MobileNetV1(MobileNet):
    final_layer = "classifier.1"

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                 padding: Padding = "torch"):
        super().__init__()
        in_channels = int(32 * width_mult)
        layers: list[nn.Module] = [ConvBNAct(3, in_channels, stride=2, padding=padding)]
        for c, s in SETTINGS:
            layers.append(depthwise_separable(in_channels, int(c * width_mult), s, padding))
            in_channels = int(c * width_mult)
        self.features = nn.Sequential(*layers)
        self.num_features = in_channels
        self.classifier = classifier_head(in_channels, num_classes, dropout)
        init_weights(self)


def build(name: str, **kwargs) -> MobileNetV1:
    """MobileNetV1 with a width multiplier (0.25 to 1.0)."""
    return MobileNetV1(**kwargs)
