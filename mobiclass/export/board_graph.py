"""The ONNX graph board compilers accept: one fixed input shape, and TF "SAME" padding turned into constant pads
folded into the convolutions (a plain Conv/Clip/Add/ReduceMean/Gemm graph, bit-identical in its outputs). rknn-toolkit2
crashes on a Pad whose amounts are computed or an initializer, and nncase 1.x needs every shape inferred."""
from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ..files import atomic_path
from ..metadata import encode, write_onnx_metadata
from ..models.blocks import Conv2dSame
from ..runtime import Classifier

BOARD_OPSET = 13


def export_board_onnx(classifier: Classifier, path: str | os.PathLike) -> Path:
    """Write the board graph of `classifier` for a batch of one image at its preprocessing size."""
    import onnx
    import onnxoptimizer

    path = Path(path)
    size = classifier.preprocessing.size
    model = static_padding(copy.deepcopy(classifier.module).float().eval(), size)
    model = model.to(memory_format=torch.contiguous_format)
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, 3, size, size), str(tmp), dynamo=False, opset_version=BOARD_OPSET,
                          input_names=["images"], output_names=["logits"], do_constant_folding=True)
        _fold_constants(tmp)  # the pad amounts torch computes become constants ...
        graph = onnxoptimizer.optimize(onnx.load(str(tmp)), ["fuse_pad_into_conv", "eliminate_identity",
                                                            "eliminate_deadend"])  # ... and then Conv pads
        used = {node.domain for node in graph.graph.node} | {""}
        kept = [entry for entry in graph.opset_import if entry.domain in used]  # no runtime-specific domains
        del graph.opset_import[:]
        graph.opset_import.extend(kept)
        onnx.save(onnx.shape_inference.infer_shapes(graph), str(tmp))
        write_onnx_metadata(tmp, encode(classifier.describe()))
    return path


def _fold_constants(path: Path) -> None:
    """ONNX Runtime's basic graph optimisations (constant folding, standard operators only), saved in place."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(path)
    options.log_severity_level = 3
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def static_padding(model: nn.Module, size: int) -> nn.Module:
    """Replace every TF-padded convolution by a constant zero pad and a plain convolution, for inputs of `size`."""
    inputs: dict[str, tuple[int, int]] = {}

    def record(name: str):
        def hook(_module, args) -> None:
            inputs[name] = tuple(args[0].shape[-2:])
        return hook

    hooks = [module.register_forward_pre_hook(record(name)) for name, module in model.named_modules()
             if isinstance(module, Conv2dSame)]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    for name, (height, width) in inputs.items():
        same = model.get_submodule(name)
        pads = []
        for length, kernel, stride, dilation in zip((height, width), same.kernel_size, same.stride, same.dilation):
            total = max((-(-length // stride) - 1) * stride + (kernel - 1) * dilation + 1 - length, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        plain = nn.Conv2d(same.in_channels, same.out_channels, same.kernel_size, same.stride, 0, same.dilation,
                          same.groups, same.bias is not None)
        plain.load_state_dict(same.state_dict())
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr,
                nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), plain))
    return model
