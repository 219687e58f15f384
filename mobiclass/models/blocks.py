"""Building blocks shared by the MobileNet family.

Every convolution is created through :func:`conv2d`, which is where the padding mode lives:
``"torch"`` pads symmetrically, ``"tf"`` reproduces TensorFlow's "SAME" padding (one extra
row/column at the bottom/right of stride-2 convolutions), which weights trained in TensorFlow
need. Both modes produce the same parameters and state_dict keys.
"""
from __future__ import annotations

import hashlib
import math
from typing import Literal
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .catalog import PADDING_MODES

Padding = Literal["torch", "tf"]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor`, never dropping more than 10%."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size at run time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride, dilation in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return super().forward(F.pad(x, [left, right, top, bottom]))


def conv2d(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
           bias: bool = False, padding: Padding = "torch") -> nn.Conv2d:
    """A square convolution that keeps the spatial size (divided by the stride) in either padding mode."""
    if padding not in PADDING_MODES:
        raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")
    if padding == "tf" and stride > 1:
        # For stride 1 and odd kernels TF "SAME" is symmetric, so only strided convolutions differ.
        return Conv2dSame(in_channels, out_channels, kernel_size, stride, 0, groups=groups, bias=bias)
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=bias)


class ConvBNAct(nn.Sequential):
    """Convolution, BatchNorm and an optional activation (torchvision's ``Conv2dNormActivation`` layout)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                 activation: Callable[..., nn.Module] | None = nn.ReLU6, padding: Padding = "torch",
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1):
        layers = [conv2d(in_channels, out_channels, kernel_size, stride, groups, padding=padding),
                  nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """Channel attention from a global average (torchvision layout: ``fc1``, ``fc2``)."""

    def __init__(self, channels: int, squeeze_channels: int, activation: Callable[..., nn.Module] = nn.ReLU,
                 scale_activation: Callable[..., nn.Module] = nn.Hardsigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return x * scale


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion, depthwise 3x3, linear 1x1 bottleneck, residual when shapes match.

    The projection has no activation (the "linear bottleneck"): ReLU in the narrow space would
    destroy information. Layout ``conv.{0,1,2,3}`` matches torchvision's checkpoints.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float,
                 padding: Padding = "torch"):
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, kernel_size=1, padding=padding))
        layers += [
            ConvBNAct(hidden, hidden, stride=stride, groups=hidden, padding=padding),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


def classifier_head(in_features: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Dropout then a linear layer: the head that transfer learning replaces (``classifier.1``)."""
    return nn.Sequential(nn.Dropout(p=dropout), nn.Linear(in_features, num_classes))


def init_weights(model: nn.Module) -> None:
    """The initialisation used by the reference implementations, for training from scratch."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


class MobileNet(nn.Module):
    """What every model of the family offers: pooled features, a replaceable head, a forward pass.

    The defaults fit torchvision's layout (``features`` then ``classifier``); subclasses set
    ``final_layer`` (the dotted name of the last ``nn.Linear``) and override what differs.
    """

    final_layer: str

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch -> pooled feature vectors (global average pooling: any resolution works)."""
        return self.features(x).mean((2, 3))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def backbone_blocks(self) -> list[nn.Module]:
        """The backbone from input to output in blocks: what ``--unfreeze N`` counts from the top."""
        return list(self.features)

    def head_modules(self) -> nn.Module:
        """Everything after the pooled features: what transfer learning trains first."""
        return self.classifier

    def cam_layer(self) -> nn.Module:
        """The last convolutional block, whose activations Grad-CAM weighs: the finest map that already carries
        what the classifier reads."""
        return self.features[-1]

    def feature_key(self) -> str:
        """What the feature cache keys this backbone's features by (data/features.py): its weights, not the head's."""
        return self.fingerprint(include_head=False)

    def fingerprint(self, include_head: bool = True) -> str:
        """A hash of every tensor (parameters and buffers): the key of caches derived from these weights."""
        skip = set() if include_head else {id(p) for p in self.head_modules().parameters()}
        digest = hashlib.sha1()
        for name, tensor in self.state_dict(keep_vars=True).items():
            if id(tensor) not in skip:
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    @property
    def num_classes(self) -> int:
        return self.get_submodule(self.final_layer).out_features

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last linear layer by a freshly initialised one with `num_classes` outputs."""
        parent_name, _, attr = self.final_layer.rpartition(".")
        parent = self.get_submodule(parent_name) if parent_name else self
        old = getattr(parent, attr)
        new = nn.Linear(old.in_features, num_classes)
        nn.init.normal_(new.weight, 0, 0.01)
        nn.init.zeros_(new.bias)
        setattr(parent, attr, new)
