"""Engines for exported files: ONNX Runtime and OpenVINO for ONNX, TorchScript; each file carries its metadata.

The two ONNX engines read the same file; which is faster depends on the machine and the format (fp32 or
int8), so :func:`fastest_engine` measures them here rather than assuming.
"""
from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..data import Preprocessing
from ..errors import UsageError, WeightsError
from ..files import cache_home
from ..weights import Weights
from .classifier import Classifier

METADATA_KEY = "mobiclass"


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class ExportedClassifier(Classifier):
    """A classifier running an exported file: no PyTorch weights; classes and preprocessing come from the file."""

    def _use_metadata(self, meta: dict, path: Path) -> None:
        self.model = None
        self.classes = list(meta["classes"])
        self.preprocessing = Preprocessing.from_dict(meta["preprocessing"])
        self.architecture, self.width_mult, self.padding = meta["architecture"], meta["width_mult"], meta["padding"]
        self.source, self.path = str(path), path

    @property
    def name(self) -> str:
        return f"{super().name} ({self.path.name} on {self.engine})"

    def to_weights(self) -> Weights:
        raise UsageError(f"{self.path} is an exported file and holds no PyTorch weights; use the run folder it was "
                         f"exported from")


def read_onnx_metadata(path: Path) -> dict:
    """The mobiclass metadata of an ONNX file, or a clear error for a missing, corrupt or foreign file."""
    import onnx

    if not path.is_file():
        raise UsageError(f"no such ONNX file: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types on a damaged file
        raise WeightsError(f"{path} is not a usable ONNX model ({str(exc).splitlines()[0][:200]})") from None
    raw = {p.key: p.value for p in model.metadata_props}.get(METADATA_KEY)
    if not raw:
        raise WeightsError(f"{path} has no mobiclass metadata (class names, preprocessing); export it with "
                           f"`mobiclass export`")
    return json.loads(raw)


class OnnxClassifier(ExportedClassifier):
    """A Classifier whose forward pass is an ONNX Runtime session (fp32 or int8 files alike)."""

    engine = "onnxruntime"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, spinning: bool = True):
        """`spinning=False` makes idle engine threads sleep instead of spin: slower alone, faster beside other
        work (a server decoding uploads); measured in benchmarks/serve_load.py."""
        import onnxruntime as ort

        path = Path(path)
        self._use_metadata(read_onnx_metadata(path), path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.log_severity_level = 3  # errors only: graph clean-up notes are not the user's concern
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own exception types
            raise WeightsError(f"{path} is not a usable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        self.input_name = self.session.get_inputs()[0].name

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        return softmax(self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0])


class OpenVinoClassifier(ExportedClassifier):
    """The same ONNX file compiled by OpenVINO for the CPU, in fp32 precision (never a silent bf16)."""

    engine = "openvino"

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import openvino as ov

        path = Path(path)
        self._use_metadata(read_onnx_metadata(path), path)
        config = {"INFERENCE_NUM_THREADS": threads or torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": "f32"}  # OpenVINO defaults to bf16 on CPUs that have it
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        return softmax(self.compiled([np.ascontiguousarray(batch, dtype=np.float32)])[0])


class TorchScriptClassifier(ExportedClassifier):
    """A traced TorchScript file (``.torchscript.pt``) with its metadata stored beside the code."""

    engine = "torchscript"

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"no such TorchScript file: {path}")
        extra = {f"{METADATA_KEY}.json": ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated, still asked for
                self.module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra).eval()
        except RuntimeError as exc:
            raise WeightsError(f"{path} is not a usable TorchScript file ({str(exc).splitlines()[0][:200]})") from None
        if not extra[f"{METADATA_KEY}.json"]:
            raise WeightsError(f"{path} has no mobiclass metadata; export it with `mobiclass export --torchscript`")
        self._use_metadata(json.loads(extra[f"{METADATA_KEY}.json"]), path)

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.module(torch.from_numpy(batch)).softmax(dim=1).numpy()


class TFLiteClassifier(ExportedClassifier):
    """An exported ``.tflite`` file run by the LiteRT interpreter; its metadata sits in ``FILE.tflite.json``."""

    engine = "litert"

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        sidecar = path.with_name(path.name + ".json")
        if not path.is_file() or not sidecar.is_file():
            raise UsageError(f"{path}: an exported TFLite model needs the file and its {sidecar.name} (to load "
                             f"TensorFlow Lite *weights* into a model, use --weights FILE.tflite --model NAME)")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise UsageError("running .tflite files needs: pip install 'mobiclass[tflite]'") from None
        self.interpreter = Interpreter(model_path=str(path))
        self.interpreter.allocate_tensors()
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        self.output_index = self.interpreter.get_output_details()[0]["index"]
        self._use_metadata(json.loads(sidecar.read_text(encoding="utf-8")), path)

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        logits = []
        for image in np.ascontiguousarray(batch, dtype=np.float32):  # the converted graph takes one image
            self.interpreter.set_tensor(self.input_index, image[None])
            self.interpreter.invoke()
            logits.append(self.interpreter.get_tensor(self.output_index)[0])
        return softmax(np.stack(logits))


ENGINES = {"onnxruntime": OnnxClassifier, "openvino": OpenVinoClassifier}


def fastest_engine(path: str | os.PathLike, batch: int = 1, runs: int = 7) -> ExportedClassifier:
    """Load `path` in every ONNX engine and keep the one with the lowest median time at `batch` images."""
    best, best_time = None, float("inf")
    for engine in ENGINES.values():
        classifier = engine(path)
        size = classifier.preprocessing.size
        x = np.zeros((batch, 3, size, size), dtype=np.float32)
        times = []
        for i in range(runs + 2):
            start = time.perf_counter()
            classifier.predict_arrays(x)
            if i >= 2:
                times.append(time.perf_counter() - start)
        if statistics.median(times) < best_time:
            best, best_time = classifier, statistics.median(times)
    return best


def onnx_metadata(classifier: Classifier) -> str:
    return json.dumps(classifier.describe())


def cached_onnx(classifier: Classifier) -> Path:
    """The ONNX export of a PyTorch classifier, made once and kept in the cache (keyed by weights and metadata)."""
    from ..export.onnx import export_onnx

    digest = hashlib.sha1(onnx_metadata(classifier).encode())
    for name, tensor in classifier.model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    path = cache_home() / "onnx" / f"{classifier.architecture}-{digest.hexdigest()[:16]}.onnx"
    if not path.exists():
        export_onnx(classifier, path)
    return path
