"""Regenerate torchvision_layouts.json from torchvision's own model source files.

torchvision cannot be imported next to CPU torch here (its compiled ops fail to load), so this
script executes the pure-Python architecture files of a torchvision wheel with tiny stand-ins for
the pieces they import (weights enums, logging, presets). Usage:

    pip download --no-deps torchvision -d /tmp/tv && unzip /tmp/tv/torchvision-*.whl -d /tmp/tv/src
    python tests/data/make_torchvision_layouts.py /tmp/tv/src/torchvision > tests/data/torchvision_layouts.json
"""
import json
import sys
import types
from pathlib import Path


def _load(root: Path):
    def module(name, **attrs):
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
        return mod

    class _Anything:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, *args, **kwargs):
            return self

        def __getattr__(self, item):
            return _Anything()

    module("torchvision").__path__ = []
    module("torchvision.utils", _log_api_usage_once=lambda *a: None,
           _make_ntuple=lambda x, n: tuple(x) if isinstance(x, (list, tuple)) else (x,) * n)
    module("torchvision._utils", sequence_to_str=str)
    module("torchvision.transforms").__path__ = []
    module("torchvision.transforms._presets", ImageClassification=_Anything)
    module("torchvision.ops").__path__ = []
    module("torchvision.models").__path__ = []
    module("torchvision.models._api", register_model=lambda *a, **k: (lambda f: f), Weights=_Anything,
           WeightsEnum=object)
    module("torchvision.models._meta", _IMAGENET_CATEGORIES=[])
    for name, rel in [("torchvision.ops.misc", "ops/misc.py"), ("torchvision.models._utils", "models/_utils.py"),
                      ("torchvision.models.mobilenetv2", "models/mobilenetv2.py"),
                      ("torchvision.models.mobilenetv3", "models/mobilenetv3.py")]:
        mod = module(name)
        mod.__package__ = name.rsplit(".", 1)[0]
        exec(compile((root / rel).read_text(), str(root / rel), "exec"), mod.__dict__)
    return sys.modules["torchvision.models.mobilenetv2"], sys.modules["torchvision.models.mobilenetv3"]


def main():
    v2, v3 = _load(Path(sys.argv[1]))
    models = {
        "mobilenet_v2": v2.MobileNetV2(),
        "mobilenet_v2_w0.5": v2.MobileNetV2(width_mult=0.5),
        "mobilenet_v2_w1.4": v2.MobileNetV2(width_mult=1.4),
        "mobilenet_v3_large": v3.MobileNetV3(*v3._mobilenet_v3_conf("mobilenet_v3_large")),
        "mobilenet_v3_small": v3.MobileNetV3(*v3._mobilenet_v3_conf("mobilenet_v3_small")),
    }
    layouts = {name: {key: list(t.shape) for key, t in m.state_dict().items()} for name, m in models.items()}
    json.dump(layouts, sys.stdout, indent=0, sort_keys=False)


if __name__ == "__main__":
    main()
