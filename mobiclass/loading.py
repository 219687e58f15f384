"""`load_classifier`: the one place that decides which engine runs a model, so that predict, evaluate,
compare, export checks and serve all score a model the same way.

Engines: ``auto`` (the default everywhere: an exported file on its own engine; a model name or run folder
exported to ONNX once, cached, and run on whichever of ONNX Runtime and OpenVINO is measured faster here,
once per machine; the provisional model of a run still training on PyTorch, as it changes each epoch), ``torch``,
``onnxruntime``, ``openvino``.
"""
from __future__ import annotations

import os
import warnings

from .engine_names import DEFAULT_ENGINE, ENGINES, engine_name
from .errors import UsageError
from .export.cache import cached_onnx, remembered_onnx, source_key
from .metadata import file_kind
from .runtime import Classifier, load_torch_classifier, onnx_engine, open_exported
from .pretrained import DEFAULT_WEIGHTS
from .run_folder import provisional_manifest

def load_classifier(model: str | os.PathLike | None = None, weights: str | os.PathLike | None = DEFAULT_WEIGHTS,
                    engine: str = DEFAULT_ENGINE, *, progress: bool = True, threads: int | None = None,
                    spin: bool = True, backend: str | None = None) -> Classifier:
    """A ready-to-use classifier.

    `model` is a model name (``"mobilenet_v2"``), a run folder, an exported ``.onnx`` / ``.torchscript.pt`` /
    ``.tflite`` file, or None for the offline default (``efficientnet_lite0``, or the architecture recorded in a
    weights file). `weights` is a pretrained weights name (``"imagenet"``), a local file (.pth, .pt,
    .safetensors, .tflite), or ``"none"``/None for random initialisation. `engine`: see the module's doc;
    `threads` and `spin` (ONNX Runtime's spinning threads) tune the engine.
    """
    if backend is not None:
        warnings.warn("load_classifier(backend=...) is now engine=...", DeprecationWarning, stacklevel=2)
        engine = backend
    engine = engine_name(engine)
    if model is not None and file_kind(model):
        return open_exported(model, engine, threads, spin)
    source = source_key(model, weights) if engine != "torch" else None
    remembered = remembered_onnx(source)
    if remembered:  # exported before: no torch, no weights to load
        return open_exported(remembered, engine, threads, spin)
    if engine == "auto" and provisional_manifest(model) is not None:
        # Replaced at the next better epoch: an export (seconds) would be stale before it paid for itself, and the
        # cache would keep one per epoch.
        engine = "torch"
    classifier = load_torch_classifier(model, weights, progress)
    return classifier if engine == "torch" else on_engine(classifier, engine, threads, spin, source)


def on_engine(classifier: Classifier, engine: str = DEFAULT_ENGINE, threads: int | None = None,
              spin: bool = True, source: str | None = None) -> Classifier:
    """A PyTorch classifier moved to `engine` (through its cached ONNX export for the ONNX engines, remembered
    under `source` when given)."""
    if engine == "torch":
        return classifier
    if engine not in ENGINES:
        raise UsageError(f"a model runs on one of the engines {', '.join(ENGINES)}, not {engine}")
    return classifier.with_engine(onnx_engine(cached_onnx(classifier, source), engine, classifier.preprocessing.size,
                                              threads, spin))
