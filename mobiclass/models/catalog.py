"""The family at a glance: one row per model, readable without importing torch (``mobiclass models`` is
instant). Parameters and multiply-adds are counted once, for 1000 classes at 224 px, and kept here; a test
recounts them from the built models."""
from __future__ import annotations

import importlib
from dataclasses import dataclass

PADDING_MODES = ("torch", "tf")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    module: str  # the file under mobiclass/models whose ``build(name, **kwargs)`` makes it
    resolution: int
    widths: tuple[float, ...]
    description: str
    params: int  # learnable parameters, 1000 classes, width 1.0
    macs: int  # multiply-adds of one 224 x 224 image
    # bf16 autocast speeds up its training step on CPUs that compute bf16 natively (measured per architecture by
    # benchmarks/pipeline_bound.py; 5x5 depthwise convolutions run slower in bf16 there)
    bf16_on_cpu: bool = False

    def build(self, **kwargs):
        return importlib.import_module(f"mobiclass.models.{self.module}").build(self.name, **kwargs)


CATALOG: dict[str, ModelSpec] = {spec.name: spec for spec in [
    ModelSpec("efficientnet_lite0", "efficientnet_lite", 224, (), "EfficientNet-Lite0: width x1.0, depth x1.0, "
              "224 px.", 4_652_008, 385_187_552),
    ModelSpec("efficientnet_lite1", "efficientnet_lite", 240, (), "EfficientNet-Lite1: width x1.0, depth x1.1, "
              "240 px.", 5_416_680, 502_467_680),
    ModelSpec("efficientnet_lite2", "efficientnet_lite", 260, (), "EfficientNet-Lite2: width x1.1, depth x1.2, "
              "260 px.", 6_092_072, 576_509_424),
    ModelSpec("mobilenet_v1", "mobilenet_v1", 224, (0.25, 0.5, 0.75, 1.0),
              "MobileNetV1 with a width multiplier (0.25 to 1.0).", 4_231_976, 568_740_352, bf16_on_cpu=True),
    ModelSpec("mobilenet_v2", "mobilenet_v2", 224, (0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
              "MobileNetV2 with a width multiplier (0.35 to 1.4); the heart of mobiclass.", 3_504_872, 300_774_272,
              bf16_on_cpu=True),
    ModelSpec("mobilenet_v3_large", "mobilenet_v3", 224, (0.75, 1.0),
              "MobileNetV3-Large: higher accuracy than V2 at lower latency on phones.", 5_483_032, 216_589_760),
    ModelSpec("mobilenet_v3_small", "mobilenet_v3", 224, (0.75, 1.0),
              "MobileNetV3-Small: for the tightest budgets.", 2_542_856, 56_510_400),
]}
