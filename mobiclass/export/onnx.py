"""ONNX, TorchScript and TFLite export: fp32 files that carry their class names and preprocessing."""
from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch

from ..errors import UsageError
from ..files import atomic_path, atomic_write_text
from ..metadata import TORCHSCRIPT_EXTRA, encode, sidecar, write_onnx_metadata
from ..runtime import Classifier

OPSET = 17


def export_onnx(classifier: Classifier, path: str | os.PathLike) -> Path:
    """Write `classifier` as an ONNX file (atomically) that serves on its own."""
    path = Path(path)
    model = plain_copy(classifier)
    size = classifier.preprocessing.size
    example = torch.zeros(2, 3, size, size)  # a batch of 2 keeps the batch axis symbolic
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about TF padding computed from shapes
        # The TorchScript-based exporter folds BatchNorm into the convolutions in eval mode.
        torch.onnx.export(model, example, str(tmp), dynamo=False, opset_version=OPSET, input_names=["images"],
                          output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                          do_constant_folding=True)
        write_onnx_metadata(tmp, encode(classifier.describe()))
    return path


def plain_copy(classifier: Classifier) -> torch.nn.Module:
    """A float32, contiguous-format copy of the classifier's PyTorch model, as exporters expect."""
    return copy.deepcopy(classifier.module).float().eval().to(memory_format=torch.contiguous_format)


def export_torchscript(classifier: Classifier, path: str | os.PathLike) -> Path:
    """A traced TorchScript module (any batch size) with the same metadata as an extra file."""
    path = Path(path)
    model = plain_copy(classifier)
    size = classifier.preprocessing.size
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, torch.zeros(2, 3, size, size))
        torch.jit.save(traced, str(tmp), _extra_files={TORCHSCRIPT_EXTRA: encode(classifier.describe())})
    return path


def export_tflite(classifier: Classifier, path: str | os.PathLike) -> Path:
    """A float TensorFlow Lite file converted by litert-torch, with its metadata in ``FILE.tflite.json``."""
    try:
        import litert_torch
    except ImportError:
        raise UsageError("TFLite export needs the converter: pip install 'mobiclass[tflite]' (litert-torch)") from None
    path = Path(path)
    model = plain_copy(classifier)
    size = classifier.preprocessing.size
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        litert_torch.convert(model, (torch.zeros(1, 3, size, size),)).export(str(tmp))
    atomic_write_text(sidecar(path), encode(classifier.describe()))
    return path
