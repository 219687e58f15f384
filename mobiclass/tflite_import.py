"""Importing TensorFlow Lite MobileNet weights into our float models.

A .tflite file is a flatbuffer graph; we read it with the ``tflite`` package (a generated parser,
no TensorFlow needed). Convolution weights are taken in graph order and mapped onto our model's
convolutions in module order; int8/uint8 tensors are dequantized (scale * (q - zero_point)).
TFLite folds BatchNorm into the convolution bias, so each BatchNorm comes back as an identity
carrying that bias. The input quantization (or, for float models, the MobileNet convention of
[-1, 1]) becomes the preprocessing; the padding mode is always TensorFlow's.
"""
from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data.transforms import TF_MEAN, TF_STD, Preprocessing
from .errors import WeightsError
from .models import MobileNet, candidate_widths, create_model

_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8}
_WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@dataclass
class TFLiteLayer:
    op: str
    weight: np.ndarray  # float32, TFLite layout (OHWI, 1HWC or [out, in])
    bias: np.ndarray | None


@dataclass
class ImportedWeights:
    model: MobileNet
    width_mult: float
    preprocessing: Preprocessing
    classes: list[str] | None  # from labels embedded in the file, if any
    dropped_background: bool


def read_tflite(path: str | Path) -> tuple[list[TFLiteLayer], Preprocessing, list[str] | None]:
    """Parse a .tflite file into its weight layers (in execution order), input preprocessing and labels."""
    try:
        import tflite
    except ImportError:  # pragma: no cover - a declared dependency
        raise WeightsError("reading .tflite files needs the 'tflite' package: pip install tflite") from None
    data = Path(path).read_bytes()
    try:
        if data[4:8] != b"TFL3":
            raise ValueError("missing TFL3 identifier")
        model = tflite.Model.GetRootAsModel(data, 0)
        graph = model.Subgraphs(0)
        op_names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
        codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
        ops = []
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = codes[op.OpcodeIndex()]
            ops.append((op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM"), op))
    except Exception as exc:  # noqa: BLE001 - the flatbuffer reader fails in many ways on a damaged file
        raise WeightsError(f"{path} is not a readable TensorFlow Lite model ({exc})") from None

    # Float16 models store weights behind DEQUANTIZE ops; follow those back to the stored tensor.
    produced_by_dequantize = {int(op.Outputs(0)): int(op.Inputs(0)) for name, op in ops if name == "DEQUANTIZE"}

    def tensor_array(index: int) -> np.ndarray:
        index = produced_by_dequantize.get(index, index)
        tensor = graph.Tensors(index)
        buffer = model.Buffers(tensor.Buffer())
        if buffer.Offset() > 1:
            raw = data[buffer.Offset():buffer.Offset() + buffer.Size()]
        else:
            raw = buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
        dtype = _NUMPY_TYPES.get(tensor.Type())
        if dtype is None or not raw:
            raise WeightsError(f"{path}: tensor {tensor.Name().decode(errors='replace')} has no stored values")
        values = np.frombuffer(raw, dtype=dtype).reshape(tensor.ShapeAsNumpy()).astype(np.float32)
        quant = tensor.Quantization()
        if dtype in (np.int8, np.uint8, np.int16, np.int32) and quant is not None and quant.ScaleLength():
            shape = [1] * values.ndim
            if quant.ScaleLength() > 1:
                shape[quant.QuantizedDimension()] = -1
            scale = quant.ScaleAsNumpy().astype(np.float32).reshape(shape)
            zero_point = quant.ZeroPointAsNumpy().astype(np.float32).reshape(shape) if quant.ZeroPointLength() else 0
            values = scale * (values - zero_point)
        return values

    layers = []
    for name, op in ops:
        if name in _WEIGHT_OPS:
            inputs = [int(i) for i in op.InputsAsNumpy()]
            bias = tensor_array(inputs[2]) if len(inputs) > 2 and inputs[2] >= 0 else None
            layers.append(TFLiteLayer(name, tensor_array(inputs[1]), bias))
    if not layers:
        raise WeightsError(f"{path} has no convolution or fully connected layers to import")
    return layers, _input_preprocessing(graph), _embedded_labels(data)


def _input_preprocessing(graph) -> Preprocessing:
    """uint8/int8 inputs carry their own affine map to real values; float inputs follow the [-1, 1] convention."""
    tensor = graph.Tensors(int(graph.InputsAsNumpy()[0]))
    size = int(tensor.ShapeAsNumpy()[1])
    quant = tensor.Quantization()
    if tensor.Type() in (3, 9) and quant is not None and quant.ScaleLength():
        scale, zero_point = float(quant.ScaleAsNumpy()[0]), float(quant.ZeroPointAsNumpy()[0])
        if tensor.Type() == 9:  # int8 input: pixel 0 is stored as -128
            zero_point += 128
        mean, std = (zero_point / 255.0,) * 3, (1.0 / (255.0 * scale),) * 3
        return Preprocessing.for_size(size, mean=mean, std=std)
    return Preprocessing.for_size(size, mean=TF_MEAN, std=TF_STD)


def _embedded_labels(data: bytes) -> list[str] | None:
    """TFLite files with metadata append a zip archive holding the label file."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [n for n in archive.namelist() if n.lower().endswith(".txt")]
            if names:
                text = archive.read(names[0]).decode("utf-8", errors="replace")
                return [line.strip() for line in text.splitlines() if line.strip()]
    except zipfile.BadZipFile:
        pass
    return None


def _weight_modules(model: nn.Module) -> list[tuple[nn.Module, nn.BatchNorm2d | None]]:
    """Our convolutions and linears in module order, each with the BatchNorm that directly follows it."""
    modules = list(model.modules())
    pairs = []
    for i, module in enumerate(modules):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            following = modules[i + 1] if i + 1 < len(modules) else None
            pairs.append((module, following if isinstance(following, nn.BatchNorm2d) else None))
    return pairs


def _to_torch_layout(layer: TFLiteLayer, module: nn.Module) -> np.ndarray:
    weight = layer.weight
    if layer.op == "DEPTHWISE_CONV_2D":  # (1, H, W, C) -> (C, 1, H, W)
        weight = weight.transpose(3, 0, 1, 2)
    elif weight.ndim == 4:  # (O, H, W, I) -> (O, I, H, W)
        weight = weight.transpose(0, 3, 1, 2)
    if isinstance(module, nn.Linear):
        weight = weight.reshape(weight.shape[0], -1)
    return weight


def _layers_fit(layers: list[TFLiteLayer], model: nn.Module) -> bool:
    pairs = _weight_modules(model)
    if len(pairs) != len(layers):
        return False
    for layer, (module, _) in zip(layers[:-1], pairs[:-1]):
        if _to_torch_layout(layer, module).shape != tuple(module.weight.shape):
            return False
    head, (last, _) = layers[-1], pairs[-1]
    return _to_torch_layout(head, last).shape[1:] == tuple(last.weight.shape[1:])


def import_tflite(path: str | Path, model_name: str, width_mult: float | None = None) -> ImportedWeights:
    """Build `model_name` (TF padding) carrying the weights of the .tflite file at `path`.

    The width multiplier is found from the file when not given. 1001-way ImageNet heads lose
    their "background" logit so the model has the usual 1000 classes.
    """
    layers, preprocessing, labels = read_tflite(path)
    head_outputs = layers[-1].weight.shape[0]
    candidates = candidate_widths(model_name, width_mult)
    for width in candidates:
        model = create_model(model_name, num_classes=head_outputs, width_mult=width, padding="tf")
        if _layers_fit(layers, model):
            break
    else:
        ours = len(_weight_modules(create_model(model_name, padding="tf")))
        raise WeightsError(f"{path} does not fit {model_name}: it has {len(layers)} weight layers, {model_name} "
                           f"has {ours} (tried widths {', '.join(map(str, candidates))})", code="wrong_architecture")

    drop_background = head_outputs == 1001 and (labels is None or len(labels) == 1001)
    with torch.no_grad():
        for layer, (module, bn) in zip(layers, _weight_modules(model)):
            module.weight.copy_(torch.from_numpy(_to_torch_layout(layer, module)))
            bias = torch.from_numpy(layer.bias) if layer.bias is not None else torch.zeros(module.weight.shape[0])
            if bn is not None:  # BN(x) = x + bias: the folded BatchNorm, put back as an identity with its bias
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0)
                bn.weight.fill_(math.sqrt(1.0 + bn.eps))
                bn.bias.copy_(bias)
            elif module.bias is not None:
                module.bias.copy_(bias)
            else:
                raise WeightsError(f"{path}: layer {layer.op} has a bias that {model_name} has no place for")
    if drop_background:
        final = model.get_submodule(model.final_layer)
        model.reset_classifier(1000)
        with torch.no_grad():
            new = model.get_submodule(model.final_layer)
            new.weight.copy_(final.weight[1:])
            new.bias.copy_(final.bias[1:])
        labels = labels[1:] if labels else None
    return ImportedWeights(model.eval(), width, preprocessing, labels, drop_background)
