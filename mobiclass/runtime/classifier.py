"""A model together with its class names and preprocessing: the object predict (and later serve) use.

A run folder (``model.safetensors`` + ``model.json``) is how a classifier is stored; every other
command consumes it.
"""
from __future__ import annotations

import json
import os
import platform
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from .. import __version__
from ..data import Preprocessing, expand_inputs, load_image
from ..data.images import ImageSource
from ..data.inputs import shard
from ..errors import ImageError, UsageError, WeightsError
from ..files import atomic_write_text
from ..models import MobileNet, create_model
from ..weights import (DEFAULT_WEIGHTS, OFFLINE_MODEL, WEIGHT_SUFFIXES, Weights, load_pretrained,
                       load_weights_file, save_weights_file)

RUN_WEIGHTS, RUN_MANIFEST = "model.safetensors", "model.json"


class Classifier:
    """Classify images with a MobileNet-family model.

    >>> clf = load_classifier("efficientnet_lite0")
    >>> clf.predict(["cat.jpg"])[0]["label"]
    'tabby'
    """

    def __init__(self, model: MobileNet, classes: Sequence[str], preprocessing: Preprocessing,
                 architecture: str, width_mult: float = 1.0, padding: str = "torch", source: str = ""):
        if model.num_classes != len(classes):
            raise ValueError(f"the model has {model.num_classes} outputs but {len(classes)} class names were given")
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.classes = list(classes)
        self.preprocessing = preprocessing
        self.architecture = architecture
        self.width_mult = width_mult
        self.padding = padding
        self.source = source

    @classmethod
    def from_weights(cls, weights: Weights) -> "Classifier":
        return cls(weights.build_model(), weights.classes, weights.preprocessing, weights.architecture,
                   weights.width_mult, weights.padding, weights.source)

    @property
    def name(self) -> str:
        return self.architecture if self.width_mult == 1.0 else f"{self.architecture} (width {self.width_mult})"

    def describe(self) -> dict:
        return {"architecture": self.architecture, "width_mult": self.width_mult, "padding": self.padding,
                "num_classes": len(self.classes), "classes": self.classes,
                "preprocessing": self.preprocessing.to_dict(), "source": self.source}

    # -- inference ---------------------------------------------------------------------------------

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities for a preprocessed batch (N, 3, H, W)."""
        with torch.inference_mode():
            x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
            return self.model(x).softmax(dim=1).numpy()

    def predict_images(self, images: Iterable[Image.Image]) -> np.ndarray:
        """Class probabilities for RGB images already in memory."""
        return self.predict_arrays(np.stack([self.preprocessing(image) for image in images]))

    def predict(self, inputs: Sequence[str | os.PathLike], top_k: int = 5, batch_size: int = 32,
                shard: tuple[int, int] | None = None) -> list[dict]:
        """Classify files, folders (searched recursively) or glob patterns; results come in input order.
        `shard=(i, n)` classifies only the i-th of n contiguous parts of the expanded inputs, cut at batch
        boundaries so that the parts' results are exactly the whole run's.

        Each result is ``{"path", "label", "index", "confidence", "top_k": [{"label", "index",
        "confidence"}, ...]}``, or ``{"path", "error"}`` for an image that cannot be used.
        """
        if top_k < 1:
            raise UsageError("top-k must be at least 1")
        return [{"path": path, "error": str(result)} if isinstance(result, ImageError) else
                {"path": path, **self.ranked(result, top_k)}
                for path, result in self.predict_files(_sharded(expand_inputs(inputs), shard, batch_size), batch_size)]

    def predict_files(self, paths: Sequence[str],
                      batch_size: int = 32) -> Iterator[tuple[str, np.ndarray | ImageError]]:
        """(path, class probabilities) for each file in order, or (path, ImageError) for one that cannot be used."""
        if batch_size < 1:
            raise UsageError("batch size must be at least 1")
        for batch_paths, prepared in self._prepared_batches(list(paths), batch_size):
            good = [i for i, item in enumerate(prepared) if isinstance(item, np.ndarray)]
            probabilities = iter(self.predict_arrays(np.stack([prepared[i] for i in good])) if good else [])
            for path, item in zip(batch_paths, prepared):
                yield path, item if isinstance(item, ImageError) else next(probabilities)

    def ranked(self, probabilities: np.ndarray, k: int) -> dict:
        """The top-k classes of one image's probabilities, as predict reports them."""
        order = np.argsort(-probabilities, kind="stable")[:min(k, len(self.classes))]
        top = [{"label": self.classes[i], "index": int(i), "confidence": float(probabilities[i])} for i in order]
        return {"label": top[0]["label"], "index": top[0]["index"], "confidence": top[0]["confidence"], "top_k": top}

    def prepare(self, source: ImageSource) -> np.ndarray | ImageError:
        """Decode and preprocess one file (or its bytes) into the model's input, or the reason it cannot be used."""
        try:
            return self.preprocessing(load_image(source, min_size=self.preprocessing.resize))
        except ImageError as exc:
            return exc

    def _prepared_batches(self, paths: list[str], batch_size: int) -> Iterator[tuple[list[str], list]]:
        """Decode and preprocess in threads (Pillow releases the GIL), one batch ahead of inference."""
        batches = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            pending = [pool.submit(self.prepare, p) for p in batches[0]] if batches else []
            for index, batch in enumerate(batches):
                current = pending
                if index + 1 < len(batches):
                    pending = [pool.submit(self.prepare, p) for p in batches[index + 1]]
                yield batch, [future.result() for future in current]

    # -- storage -------------------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write the run folder: ``model.safetensors`` (weights + metadata) and ``model.json`` (readable)."""
        return save_run(folder, self.to_weights(), extra)

    def to_weights(self) -> Weights:
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        return Weights(state, self.architecture, self.padding, self.preprocessing, self.classes,
                       self.width_mult, self.source)


def _sharded(paths: list[str], which: tuple[int, int] | None, batch_size: int) -> list[str]:
    return paths if which is None else shard(paths, *which, block=batch_size)


def save_run(folder: str | os.PathLike, weights: Weights, extra: dict | None = None) -> Path:
    """Write `weights` as a run folder; `extra` (training config, metrics) goes into model.json."""
    folder = Path(folder)
    save_weights_file(weights, folder / RUN_WEIGHTS)
    manifest = {"format": "mobiclass-run", "format_version": 1, **weights.metadata(),
                "num_classes": len(weights.classes),
                "versions": {"mobiclass": __version__, "torch": torch.__version__, "python": platform.python_version()},
                **(extra or {})}
    atomic_write_text(folder / RUN_MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return folder


BACKENDS = ("auto", "fastest", "torch", "onnxruntime", "openvino")


def load_classifier(model: str | os.PathLike | None = None, weights: str | os.PathLike | None = DEFAULT_WEIGHTS,
                    progress: bool = True, backend: str = "auto") -> Classifier:
    """A ready-to-use classifier.

    `model` is a model name (``"mobilenet_v2"``), a run folder, an exported ``.onnx`` file, or None
    for the offline default (``efficientnet_lite0``, or the architecture recorded in a weights
    file). `weights` is a pretrained weights name (``"imagenet"``), a local file (.pth, .pt,
    .safetensors, .tflite), or ``"none"``/None for random initialisation.

    `backend`: ``torch``; ``onnxruntime`` or ``openvino`` (a PyTorch model is exported to ONNX once
    and cached); ``fastest`` (the ONNX engine measured fastest here); ``auto`` (ONNX files on the
    fastest ONNX engine, everything else on PyTorch).
    """
    if backend not in BACKENDS:
        raise UsageError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if model is not None and os.fspath(model).endswith((".torchscript.pt", ".tflite")):
        from .engines import TFLiteClassifier, TorchScriptClassifier

        return (TorchScriptClassifier if os.fspath(model).endswith(".pt") else TFLiteClassifier)(model)
    is_onnx = model is not None and os.fspath(model).endswith(".onnx")
    if is_onnx and backend == "torch":
        raise UsageError("an .onnx file runs on the onnxruntime or openvino backend, not torch")
    if backend == "torch" or (backend == "auto" and not is_onnx):
        return _load_torch_classifier(model, weights, progress)
    from .engines import ENGINES, cached_onnx, fastest_engine

    path = model if is_onnx else cached_onnx(_load_torch_classifier(model, weights, progress))
    return fastest_engine(path) if backend in ("auto", "fastest") else ENGINES[backend](path)


def _load_torch_classifier(model, weights, progress: bool) -> Classifier:
    if model is not None and _looks_like_path(model):
        if weights not in (DEFAULT_WEIGHTS, None):
            raise UsageError("--weights cannot be combined with a run folder, which holds its own weights")
        if Path(model).is_file():
            return Classifier.from_weights(load_weights_file(model))
        return load_run(model)
    if weights is not None and _looks_like_path(weights):
        return Classifier.from_weights(load_weights_file(weights, model and str(model)))
    model = str(model or OFFLINE_MODEL)
    if weights in (None, "none"):
        net = create_model(model)
        return Classifier(net, [f"class_{i}" for i in range(net.num_classes)], Preprocessing.for_size(224), model,
                          source="random initialisation")
    return Classifier.from_weights(load_pretrained(model, str(weights), progress=progress))


def load_run(folder: str | os.PathLike) -> Classifier:
    """Load a run folder written by :meth:`Classifier.save` (or by training)."""
    folder = Path(folder)
    if not folder.exists():
        raise UsageError(f"no such model or run folder: {folder}")
    if not (folder / RUN_MANIFEST).is_file() or not (folder / RUN_WEIGHTS).is_file():
        raise UsageError(f"{folder} is not a run folder: it needs {RUN_WEIGHTS} and {RUN_MANIFEST}")
    try:
        manifest = json.loads((folder / RUN_MANIFEST).read_text(encoding="utf-8"))
        weights = load_weights_file(folder / RUN_WEIGHTS, manifest["architecture"], manifest.get("width_mult"))
    except (json.JSONDecodeError, KeyError) as exc:
        raise WeightsError(f"{folder / RUN_MANIFEST} is damaged ({exc}); retrain or restore the run folder") from None
    return Classifier.from_weights(weights)


def _looks_like_path(value: str | os.PathLike) -> bool:
    text = os.fspath(value)
    return isinstance(value, os.PathLike) or os.sep in text or text.endswith(WEIGHT_SUFFIXES) or Path(text).exists()
