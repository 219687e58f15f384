"""Engines: what runs a model's forward pass. A :class:`~mobiclass.runtime.Classifier` holds one.

Every engine takes a preprocessed float32 batch (N, 3, H, W) and returns logits (N, classes); it says its
`name`, the `file` it runs (None for a model in memory) and its PyTorch `module` (the torch engine only).
The two ONNX engines read the same file; which is faster depends on the machine and the format (fp32 or
int8), so :func:`choose_onnx_engine` measures them here once and remembers the answer.
"""
from __future__ import annotations

import hashlib
import json
import os
import statistics
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import UsageError, WeightsError
from ..files import atomic_write_text, cache_home


class Engine:
    """The interface: ``run(batch) -> logits``, plus what the engine is and runs."""

    name = ""
    file: Path | None = None
    module = None  # the torch.nn.Module, for the engine that runs one

    def run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class TorchEngine(Engine):
    """PyTorch eager mode on the CPU: channels_last, inference mode."""

    name = "torch"

    def __init__(self, module):
        import torch

        self.module = module.eval().to(memory_format=torch.channels_last)

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            return self.module(x.contiguous(memory_format=torch.channels_last)).float().numpy()


def _default_threads() -> int:
    return int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1


class OnnxRuntimeEngine(Engine):
    """An ONNX Runtime session on the CPU (fp32 or int8 files alike)."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, spin: bool = True):
        """`spin=False` makes idle engine threads sleep instead of spin: slower alone, faster beside other work
        (a server decoding uploads); measured in benchmarks/serve_load.py."""
        import onnxruntime as ort

        self.file = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or _default_threads()
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        options.log_severity_level = 3  # errors only: graph clean-up notes are not the user's concern
        try:
            self.session = ort.InferenceSession(str(self.file), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own exception types
            raise WeightsError(f"{self.file} is not a usable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]


class OpenVinoEngine(Engine):
    """The same ONNX file compiled by OpenVINO for the CPU, in fp32 (never a silent bf16: it changes answers, see
    benchmarks/inference_bf16.py). One image runs on every thread (latency); a batch runs one image per thread in
    parallel streams, compiled on first use: 15 % more images/s on 2 cores, with the same logits."""

    name = "openvino"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, spin: bool = True):
        import openvino as ov

        self.file = Path(path)
        self.threads = threads or _default_threads()
        self._core = ov.Core()
        try:
            self._model = self._core.read_model(str(self.file))
            self._latency = self._compile("LATENCY")
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses of its own
            raise WeightsError(f"{self.file} is not a usable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        self._streams = None
        self._lock = threading.Lock()  # an OpenVINO request serves one call at a time

    def _compile(self, hint: str):
        config = {"INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": hint,
                  "INFERENCE_PRECISION_HINT": "f32"}  # OpenVINO defaults to bf16 on CPUs that have it
        if hint == "THROUGHPUT":
            config["NUM_STREAMS"] = self.threads
        return self._core.compile_model(self._model, "CPU", config)

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock:
            if len(batch) == 1 or self.threads == 1:
                return self._latency([batch])[0]
            return self._run_streams(batch)

    def _run_streams(self, batch: np.ndarray) -> np.ndarray:
        import openvino as ov

        if self._streams is None:
            self._streams = ov.AsyncInferQueue(self._compile("THROUGHPUT"), self.threads)
        logits: list = [None] * len(batch)

        def keep(request, index: int) -> None:
            logits[index] = request.get_output_tensor(0).data.copy()

        self._streams.set_callback(keep)
        for index in range(len(batch)):
            self._streams.start_async({0: batch[index:index + 1]}, index)
        self._streams.wait_all()
        return np.concatenate(logits)


class TorchScriptEngine(Engine):
    """A traced TorchScript file (``.torchscript.pt``)."""

    name = "torchscript"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, spin: bool = True):
        import torch

        self.file = Path(path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated, still asked for
                self.script = torch.jit.load(str(self.file), map_location="cpu").eval()
        except RuntimeError as exc:
            raise WeightsError(f"{self.file} is not a usable TorchScript file "
                               f"({str(exc).splitlines()[0][:200]})") from None

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.script(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()


class LiteRTEngine(Engine):
    """An exported ``.tflite`` file run by the LiteRT interpreter."""

    name = "litert"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, spin: bool = True):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise UsageError("running .tflite files needs the LiteRT interpreter: pip install "
                             "'mobiclass[tflite]'") from None
        self.file = Path(path)
        self.interpreter = Interpreter(model_path=str(self.file), num_threads=threads or _default_threads())
        self.interpreter.allocate_tensors()
        self.input, self.output = self.interpreter.get_input_details()[0], self.interpreter.get_output_details()[0]
        shape = self.input["shape"]
        self.channels_last = shape[-1] == 3 and shape[1] != 3  # microcontroller models take NHWC

    def run(self, batch: np.ndarray) -> np.ndarray:
        logits = []
        for image in np.ascontiguousarray(batch, dtype=np.float32):  # the converted graph takes one image
            if self.channels_last:
                image = image.transpose(1, 2, 0)
            self.interpreter.set_tensor(self.input["index"], _quantized(image[None], self.input))
            self.interpreter.invoke()
            logits.append(_dequantized(self.interpreter.get_tensor(self.output["index"])[0], self.output))
        return np.stack(logits)


def _quantized(values: np.ndarray, tensor: dict) -> np.ndarray:
    """Float values in a full-integer TFLite model's input type, with its scale and zero point."""
    if tensor["dtype"] == np.float32:
        return values
    scale, zero_point = tensor["quantization"]
    limits = np.iinfo(tensor["dtype"])
    return np.clip(np.round(values / scale + zero_point), limits.min, limits.max).astype(tensor["dtype"])


def _dequantized(values: np.ndarray, tensor: dict) -> np.ndarray:
    if tensor["dtype"] == np.float32:
        return values
    scale, zero_point = tensor["quantization"]
    return (values.astype(np.float32) - zero_point) * scale


ONNX_ENGINES: dict[str, type[Engine]] = {"onnxruntime": OnnxRuntimeEngine, "openvino": OpenVinoEngine}
FILE_ENGINES: dict[str, type[Engine]] = {"torchscript": TorchScriptEngine, "tflite": LiteRTEngine}


def measure_speed(run, batch_shape: tuple[int, ...], runs: int, warmup: int = 3) -> list[float]:
    """Seconds per call of `run` on a fixed random batch, after a warm-up: the one timing loop of mobiclass."""
    x = np.random.default_rng(0).standard_normal(batch_shape, dtype=np.float32)
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        run(x)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def measure_onnx_engines(path: str | os.PathLike, size: int, threads: int | None = None, spin: bool = True,
                         runs: int = 7) -> dict[str, float]:
    """Median seconds per image at batch 1 of every ONNX engine on `path`."""
    return {name: statistics.median(measure_speed(engine(path, threads, spin).run, (1, 3, size, size), runs, 2))
            for name, engine in ONNX_ENGINES.items()}


def choose_onnx_engine(path: str | os.PathLike, size: int, threads: int | None = None,
                       spin: bool = True) -> Engine:
    """The faster ONNX engine for `path` on this machine: measured on first use, then remembered (keyed by the
    file's content, the thread count and the machine's cores) in ``MOBICLASS_HOME/engines.json``."""
    memo_path = cache_home() / "engines.json"
    key = f"{_file_key(Path(path))}:threads={threads or _default_threads()}:spin={int(spin)}:cpus={os.cpu_count()}"
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    if memo.get(key, {}).get("engine") not in ONNX_ENGINES:
        timings = measure_onnx_engines(path, size, threads, spin)
        memo[key] = {"engine": min(timings, key=timings.get), "seconds": timings}
        atomic_write_text(memo_path, json.dumps(memo, indent=1) + "\n")
    return ONNX_ENGINES[memo[key]["engine"]](path, threads, spin)


def remembered_timings(path: str | os.PathLike) -> list[dict]:
    """What :func:`choose_onnx_engine` measured and chose for `path` (any thread count)."""
    try:
        memo = json.loads((cache_home() / "engines.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    prefix = _file_key(Path(path)) + ":"
    return [entry for key, entry in memo.items() if key.startswith(prefix)]


def _file_key(path: Path) -> str:
    """A file's identity without reading it whole: name, size, modification time and its first 64 KiB."""
    stat = path.stat()
    with open(path, "rb") as f:
        head = hashlib.sha1(f.read(1 << 16)).hexdigest()[:16]
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}:{head}"
