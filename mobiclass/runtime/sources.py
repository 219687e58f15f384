"""Where a classifier comes from: a model name with pretrained weights, a weights file, a run folder (all on
the torch engine), or an exported file on the engine that runs it."""
from __future__ import annotations

import os
from pathlib import Path

from ..data import Preprocessing
from ..errors import UsageError
from ..metadata import file_kind, read_file_metadata
from ..model_info import ModelInfo
from ..models import create_model
from ..run_folder import RunFolder
from ..pretrained import DEFAULT_WEIGHTS, OFFLINE_MODEL, WEIGHT_SUFFIXES
from .classifier import Classifier
from .engines import FILE_ENGINES, ONNX_ENGINES, Engine, TorchEngine, choose_onnx_engine


def load_torch_classifier(model: str | os.PathLike | None = None,
                          weights: str | os.PathLike | None = DEFAULT_WEIGHTS, progress: bool = True,
                          width_mult: float | None = None) -> Classifier:
    """A classifier on the torch engine: `model` is a model name, a run folder or a weights file (or None for
    the offline default); `weights` a pretrained name, a local file, or "none"/None for random weights;
    `width_mult` picks among a model's pretrained widths (MobileNetV1 0.25, 0.5, 0.75)."""
    from ..weights import load_pretrained, load_weights_file  # torch: imported when a PyTorch model is wanted

    if model is not None and file_kind(model):
        raise UsageError(f"{model} is an exported file and holds no PyTorch weights; use the run folder it was "
                         f"exported from", code="no_torch_model")
    if model is not None and looks_like_path(model):
        if weights not in (DEFAULT_WEIGHTS, None):
            raise UsageError("weights cannot be combined with a run folder, which holds its own weights")
        if Path(model).is_file():
            return Classifier.from_weights(load_weights_file(model))
        return load_run(model)
    if weights is not None and looks_like_path(weights):
        return Classifier.from_weights(load_weights_file(weights, model and str(model)))
    model = str(model or OFFLINE_MODEL)
    if weights in (None, "none"):
        net = create_model(model)
        return Classifier(TorchEngine(net), ModelInfo(architecture=model, preprocessing=Preprocessing.for_size(224),
                                                      classes=[f"class_{i}" for i in range(net.num_classes)],
                                                      source="random initialisation"))
    return Classifier.from_weights(load_pretrained(model, str(weights), progress=progress, width_mult=width_mult))


def load_run(folder: str | os.PathLike) -> Classifier:
    """Load a run folder written by :meth:`Classifier.save` (or by training), on the torch engine."""
    return Classifier.from_weights(RunFolder(folder).load_weights())


def open_exported(path: str | os.PathLike, engine: str = "auto", threads: int | None = None,
                  spin: bool = True) -> Classifier:
    """An exported .onnx, .torchscript.pt or .tflite file on `engine` ("auto": the one for that file; for ONNX,
    the faster of ONNX Runtime and OpenVINO here)."""
    kind = file_kind(path)
    if kind == "onnx" and engine not in ("auto", *ONNX_ENGINES):
        raise UsageError(f"an .onnx file runs on the {' or '.join(ONNX_ENGINES)} engine, not {engine}")
    metadata = read_file_metadata(path)
    if kind == "onnx":
        runner = onnx_engine(path, engine, metadata["preprocessing"]["size"], threads, spin)
    else:
        runner_type = FILE_ENGINES[kind]
        if engine not in ("auto", runner_type.name):
            raise UsageError(f"a {kind} file runs on the {runner_type.name} engine, not {engine}")
        runner = runner_type(path, threads, spin)
    return Classifier.from_metadata(runner, metadata)


def onnx_engine(path: str | os.PathLike, engine: str, size: int, threads: int | None = None,
                spin: bool = True) -> Engine:
    """An ONNX engine on `path`: the named one, or for "auto" the faster one here (measured once)."""
    if engine == "auto":
        return choose_onnx_engine(path, size, threads, spin)
    return ONNX_ENGINES[engine](path, threads, spin)


def looks_like_path(value: str | os.PathLike) -> bool:
    text = os.fspath(value)
    return isinstance(value, os.PathLike) or os.sep in text or text.endswith(WEIGHT_SUFFIXES) or Path(text).exists()
