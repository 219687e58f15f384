"""The architectures: exact sizes, torchvision-compatible layouts, padding modes, resolutions and widths."""
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mobiclass import UsageError, count_macs, count_parameters, create_model, list_models
from mobiclass.models import get_model_spec
from mobiclass.models.blocks import Conv2dSame, conv2d, make_divisible

LAYOUTS = json.loads((Path(__file__).parent / "data" / "torchvision_layouts.json").read_text())


def shapes(model):
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def test_registry_lists_the_family():
    assert list_models() == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mobilenet_v1",
                             "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"]


@pytest.mark.parametrize("name, params", [
    ("mobilenet_v2", 3_504_872),
    ("mobilenet_v3_large", 5_483_032),
    ("mobilenet_v3_small", 2_542_856),
    ("mobilenet_v1", 4_231_976),
    ("efficientnet_lite0", 4_652_008),
    ("efficientnet_lite1", 5_416_680),
    ("efficientnet_lite2", 6_092_072),
])
def test_parameter_counts(name, params):
    assert count_parameters(create_model(name)) == params


def test_multiply_adds_are_counted_from_the_graph():
    # The papers quote 300M (V2), 219M (V3-Large), 56M (V3-Small), 569M (V1) and ~385M (Lite0).
    assert count_macs(create_model("mobilenet_v2")) == 300_774_272
    assert count_macs(create_model("mobilenet_v1")) == 568_740_352
    assert count_macs(create_model("mobilenet_v3_small")) == 56_510_400
    assert count_macs(create_model("efficientnet_lite0")) == 385_187_552
    # Cost scales with the pixel count: 4x the pixels, about 4x the multiply-adds.
    assert 3.9 < count_macs(create_model("mobilenet_v2"), 448) / count_macs(create_model("mobilenet_v2"), 224) < 4.0


@pytest.mark.parametrize("layout, name, width", [
    ("mobilenet_v2", "mobilenet_v2", 1.0),
    ("mobilenet_v2_w0.5", "mobilenet_v2", 0.5),
    ("mobilenet_v2_w1.4", "mobilenet_v2", 1.4),
    ("mobilenet_v3_large", "mobilenet_v3_large", 1.0),
    ("mobilenet_v3_small", "mobilenet_v3_small", 1.0),
])
@pytest.mark.parametrize("padding", ["torch", "tf"])
def test_state_dict_matches_torchvision(layout, name, width, padding):
    """Keys and shapes generated from torchvision's own architecture files (see tests/data)."""
    model = create_model(name, width_mult=width, padding=padding)
    assert shapes(model) == LAYOUTS[layout]


def test_torchvision_keys_examples():
    keys = create_model("mobilenet_v2").state_dict()
    for key in ("features.0.0.weight", "features.1.conv.0.0.weight", "features.18.1.running_var",
                "classifier.1.weight"):
        assert key in keys


def test_efficientnet_lite_layout_matches_the_published_weights():
    keys = set(create_model("efficientnet_lite0").state_dict())
    assert {"_conv_stem.weight", "_bn0.running_mean", "_blocks.0._depthwise_conv.weight",
            "_blocks.15._project_conv.weight", "_conv_head.weight", "_fc.weight", "_fc.bias"} <= keys
    assert "_blocks.0._expand_conv.weight" not in keys  # the first block has no expansion
    assert len({k.split(".")[1] for k in keys if k.startswith("_blocks.")}) == 16


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
                                  "efficientnet_lite0"])
@pytest.mark.parametrize("resolution", [96, 160, 225])
def test_output_shape_at_any_resolution(name, resolution):
    model = create_model(name, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, resolution, resolution)).shape == (2, 7)
        assert model.forward_features(torch.zeros(1, 3, resolution, resolution)).shape == (1, model.num_features)


@pytest.mark.parametrize("width, features", [(0.35, 1280), (0.5, 1280), (0.75, 1280), (1.0, 1280), (1.3, 1664),
                                             (1.4, 1792)])
def test_mobilenet_v2_widths(width, features):
    model = create_model("mobilenet_v2", num_classes=3, width_mult=width).eval()
    assert model.num_features == features
    assert model.features[0][0].out_channels == make_divisible(32 * width)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 128, 128)).shape == (1, 3)


def test_width_multiplier_shrinks_the_model_quadratically():
    full, half = (count_macs(create_model("mobilenet_v2", width_mult=w)) for w in (1.0, 0.5))
    assert 0.25 < half / full < 0.4


def test_unknown_model_and_width_are_clear_errors():
    with pytest.raises(UsageError, match="unknown model 'mobilenet_v9'; choose one of: efficientnet_lite0"):
        create_model("mobilenet_v9")
    with pytest.raises(UsageError, match="mobilenet_v2 has no width 0.6; widths: 0.35, 0.5, 0.75, 1.0, 1.3, 1.4"):
        create_model("mobilenet_v2", width_mult=0.6)
    with pytest.raises(UsageError, match="padding must be one of torch, tf"):
        create_model("mobilenet_v2", padding="same")


@pytest.mark.parametrize("size", [223, 224])
def test_tf_same_padding_is_asymmetric_on_stride_2(size):
    torch.manual_seed(0)
    conv = conv2d(3, 4, 3, stride=2, padding="tf")
    assert isinstance(conv, Conv2dSame)
    x = torch.randn(1, 3, size, size)
    total = max((math.ceil(size / 2) - 1) * 2 + 3 - size, 0)
    expected = F.conv2d(F.pad(x, [total // 2, total - total // 2] * 2), conv.weight, stride=2)
    assert torch.allclose(conv(x), expected)
    assert conv(x).shape[-1] == math.ceil(size / 2)
    if size == 224:  # an even input: TensorFlow pads 0 before and 1 after, PyTorch 1 on each side
        torch_conv = conv2d(3, 4, 3, stride=2, padding="torch")
        torch_conv.load_state_dict(conv.state_dict())
        assert not torch.allclose(torch_conv(x), conv(x))


def test_padding_mode_only_changes_strided_convolutions():
    tf_model = create_model("mobilenet_v2", padding="tf")
    assert sum(isinstance(m, Conv2dSame) for m in tf_model.modules()) == 5  # the stem and 4 stride-2 depthwise
    assert not any(isinstance(m, Conv2dSame) for m in create_model("mobilenet_v2").modules())


def test_reset_classifier_keeps_the_backbone():
    model = create_model("mobilenet_v3_small")
    backbone = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("classifier.3")}
    model.reset_classifier(5)
    assert model.num_classes == 5
    assert all(torch.equal(model.state_dict()[k], v) for k, v in backbone.items())


@pytest.mark.parametrize("name", list_models())
def test_catalog_figures_are_the_counted_ones(name):
    """`mobiclass models` reads these from the catalog without building anything; they must stay true."""
    spec, model = get_model_spec(name), create_model(name)
    assert (spec.params, spec.macs) == (count_parameters(model), count_macs(model, 224))
