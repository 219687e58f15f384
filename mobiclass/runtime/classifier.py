"""A model's engine together with its class names and preprocessing: the object predict, evaluate, export and
serve use. Which engine runs the forward pass (PyTorch, ONNX Runtime, OpenVINO, ...) is the engine's business;
the classifier decodes, batches, applies softmax and ranks the same way for all of them."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from ..data import expand_inputs, load_image
from ..data.images import MAX_PIXELS, ImageSource
from ..data.inputs import shard
from ..errors import ImageError, UsageError, WeightsError
from ..model_info import ModelInfo
from .engines import Engine, TorchEngine


UNSURE = "unsure"


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = logits / temperature if temperature != 1.0 else logits
    shifted = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class Classifier:
    """Classify images with a MobileNet-family model running on an engine.

    >>> clf = load_classifier("efficientnet_lite0")
    >>> clf.predict(["cat.jpg"])[0]["label"]
    'tabby'
    """

    def __init__(self, engine: Engine, info: ModelInfo):
        if engine.module is not None and engine.module.num_classes != len(info.classes):
            raise ValueError(f"the model has {engine.module.num_classes} outputs but {len(info.classes)} class names "
                             f"were given")
        self.engine, self.info = engine, info
        self.classes = list(info.classes)

    preprocessing = property(lambda self: self.info.preprocessing)
    architecture = property(lambda self: self.info.architecture)
    width_mult = property(lambda self: self.info.width_mult)
    padding = property(lambda self: self.info.padding)
    source = property(lambda self: self.info.source)
    temperature = property(lambda self: self.info.temperature)

    @classmethod
    def from_weights(cls, weights) -> Classifier:
        """A PyTorch classifier from :class:`~mobiclass.weights.Weights`."""
        return cls(TorchEngine(weights.build_model()), weights.info)

    @classmethod
    def from_metadata(cls, engine: Engine, metadata: dict) -> Classifier:
        """A classifier for an exported file, from the metadata the file carries."""
        return cls(engine, ModelInfo.from_metadata(metadata, source=str(engine.file)))

    def with_engine(self, engine: Engine) -> Classifier:
        """The same model (classes, preprocessing) on another engine, e.g. its ONNX export."""
        return Classifier(engine, self.info if engine.file is None else self.info.replace(source=str(engine.file)))

    @property
    def name(self) -> str:
        name = self.architecture if self.width_mult == 1.0 else f"{self.architecture} (width {self.width_mult})"
        return f"{name} ({self.engine.file.name} on {self.engine.name})" if self.engine.file else name

    @property
    def module(self):
        """The PyTorch module: only a classifier on the torch engine has one."""
        if self.engine.module is None:
            raise UsageError(f"{self.source} runs on the {self.engine.name} engine and holds no PyTorch model "
                             f"(load the run folder or model name on the torch engine)", code="no_torch_model")
        return self.engine.module

    @property
    def class_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.classes)}

    def describe(self) -> dict:
        """The metadata exported files carry and the service reports."""
        return {**self.info.metadata(), "num_classes": len(self.classes)}

    # -- inference ---------------------------------------------------------------------------------

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities for a preprocessed batch (N, 3, H, W); a model that answers NaN or infinity is
        refused rather than reported as a confident class."""
        probabilities = softmax(self.engine.run(batch), self.temperature)
        if not np.isfinite(probabilities).all():
            raise WeightsError(f"{self.source or self.name} gives non-finite outputs (NaN or infinity): its weights "
                               f"are damaged")
        return probabilities

    def predict_images(self, images: Iterable[Image.Image]) -> np.ndarray:
        """Class probabilities for RGB images already in memory."""
        return self.predict_arrays(np.stack([self.preprocessing(image) for image in images]))

    def predict(self, inputs: Sequence[str | os.PathLike], top_k: int = 5, batch_size: int = 32,
                shard: tuple[int, int] | None = None, on_batch: Callable[[int], None] | None = None,
                min_confidence: float = 0.0) -> list[dict]:
        """Classify files, folders (searched recursively) or glob patterns; results come in input order.
        `shard=(i, n)` classifies only the i-th of n contiguous parts of the expanded inputs, cut at batch
        boundaries so that the parts' results are exactly the whole run's.

        Each result is ``{"path", "label", "index", "confidence", "top_k": [{"label", "index",
        "confidence"}, ...]}``, or ``{"path", "error"}`` for an image that cannot be used. `on_batch(n)` follows
        progress; under `min_confidence` the label is ``"unsure"`` (see :meth:`ranked`).
        """
        if top_k < 1:
            raise UsageError("top-k must be at least 1")
        if not 0 <= min_confidence <= 1:
            raise UsageError(f"the minimum confidence must be between 0 and 1, got {min_confidence}")
        return [self.result(path, outcome, top_k, min_confidence)
                for path, outcome in self.predict_files(_sharded(expand_inputs(inputs), shard, batch_size),
                                                        batch_size, on_batch)]

    def predict_files(self, paths: Sequence[str], batch_size: int = 32, on_batch: Callable[[int], None] | None = None
                      ) -> Iterator[tuple[str, np.ndarray | ImageError]]:
        """(path, class probabilities) for each file in order, or (path, ImageError) for one that cannot be used."""
        if batch_size < 1:
            raise UsageError("batch size must be at least 1")
        for batch_paths, prepared in self._prepared_batches(list(paths), batch_size):
            good = [i for i, item in enumerate(prepared) if isinstance(item, np.ndarray)]
            probabilities = iter(self.predict_arrays(np.stack([prepared[i] for i in good])) if good else [])
            for path, item in zip(batch_paths, prepared):
                yield path, item if isinstance(item, ImageError) else next(probabilities)
            if on_batch:
                on_batch(len(batch_paths))

    def result(self, path: str, outcome: np.ndarray | ImageError, top_k: int, min_confidence: float = 0.0) -> dict:
        """One image's result object, as predict prints it and the HTTP APIs answer it: its ranked classes, or
        ``{"path", "error"}`` when it could not be used."""
        if isinstance(outcome, ImageError):
            return {"path": path, "error": str(outcome)}
        return {"path": path, **self.ranked(outcome, top_k, min_confidence)}

    def ranked(self, probabilities: np.ndarray, k: int, min_confidence: float = 0.0) -> dict:
        """The top-k classes of one image's probabilities, as predict reports them. Under `min_confidence` the
        answer is ``"unsure"`` (index None, ``"unsure": true``): a camera that must not guess needs no label then."""
        order = np.argsort(-probabilities, kind="stable")[:min(k, len(self.classes))]
        top = [{"label": self.classes[i], "index": int(i), "confidence": float(probabilities[i])} for i in order]
        result = {"label": top[0]["label"], "index": top[0]["index"], "confidence": top[0]["confidence"], "top_k": top}
        if top[0]["confidence"] < min_confidence:
            result.update(label=UNSURE, index=None, unsure=True)
        return result

    def prepare(self, source: ImageSource, max_pixels: int = MAX_PIXELS) -> np.ndarray | ImageError:
        """Decode and preprocess one file (or its bytes) into the model's input, or the reason it cannot be used."""
        try:
            return self.preprocessing(load_image(source, min_size=self.preprocessing.resize, max_pixels=max_pixels))
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

    def to_weights(self):
        """The PyTorch weights with everything needed to rebuild this classifier."""
        from ..weights import Weights

        state = {k: v.detach().contiguous() for k, v in self.module.state_dict().items()}
        return Weights(state, self.info)

    def save(self, folder: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write a run folder: ``model.safetensors`` (weights + metadata) and ``model.json`` (readable)."""
        from ..run_folder import RunFolder

        return RunFolder(folder).save_model(self.to_weights(), extra)


def _sharded(paths: list[str], which: tuple[int, int] | None, batch_size: int) -> list[str]:
    return paths if which is None else shard(paths, *which, block=batch_size)
