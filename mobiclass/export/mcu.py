"""Microcontroller bundles: TensorFlow Lite Micro (``tflm``) and Arm Ethos-U (``ethos-u``, compiled by vela).

Both start from one full-integer int8 .tflite with an NHWC input, converted by litert-torch and calibrated on real
training crops. Its weight buffers are put back inside the flatbuffer (the quantizer writes large ones after it,
which TFLite Micro cannot read) and aligned to 16 bytes. Verification runs every validation crop through the
TensorFlow Lite Micro interpreter itself (reference kernels), through the same 256-entry tables the board program
uses to turn pixels into int8 input, and reads the tensor arena the interpreter actually allocated.
"""
from __future__ import annotations

import csv
import ctypes
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..files import atomic_write_bytes, atomic_write_text
from ..metadata import encode, sidecar
from ..runtime import Classifier
from .mcu_programs import write_programs
from .toolchains import ToolchainError

MCU_FORMATS = ("tflm", "ethos-u")
ETHOS_ACCELERATOR = "ethos-u55-128"
ARENA_ALIGNMENT = 16
PROBE_ARENA = 64 * 1024 * 1024  # large enough for any model; the interpreter reports what it really used


def convert(board: str, classifier: Classifier, request: dict) -> dict:
    """Convert for `board`, write its files into request["out"], verify through TFLite Micro (the answer's
    "logits"), and report the arena (and, for Ethos-U, vela's figures) in "memory"."""
    scratch, out = Path(request["scratch"]), Path(request["out"])
    model = int8_tflite(classifier, scratch, np.load(request["calibration"]), request["mean"], request["std"])
    arena = arena_bytes(model)
    limit_kb = request.get("ram_limit_kb")
    if limit_kb is not None and arena / 1000 > limit_kb:
        raise UsageError(f"TensorFlow Lite Micro needs a {arena / 1000:,.1f} kB tensor arena for this model; "
                         f"{request['target']} has {limit_kb:,} kB of RAM for it ({request['memory_note']})",
                         code="arena_does_not_fit", target=request["target"], arena_kb=round(arena / 1000, 1))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    logits = run_tflm(model, np.load(request["verify"]), request["mean"], request["std"])
    run_seconds = time.perf_counter() - started
    memory = {"arena": arena}
    atomic_write_bytes(out / "model.tflite", model)
    atomic_write_text(sidecar(out / "model.tflite"), encode(classifier.describe()))  # mobiclass predict reads it
    files, extra = ["model.tflite"], [sidecar(out / "model.tflite").name]
    if board == "ethos-u":
        memory.update(compile_for_ethos_u(out / "model.tflite", scratch))
        atomic_write_bytes(out / "model_vela.tflite", (scratch / "vela" / "model_vela.tflite").read_bytes())
        files, extra = ["model_vela.tflite"], ["model.tflite", *extra]
    device_model = (out / files[0]).read_bytes()
    extra += write_programs(board, classifier, out, device_model, arena, input_quantization(model),
                            request["mean"], request["std"], vela=memory if board == "ethos-u" else None)
    np.save(scratch / "logits.npy", logits)
    notes = {"unverified": {"model_vela.tflite": "its Ethos-U operator runs on the NPU only, which is not here: the "
                                                 "int8 model vela compiled (model.tflite) is what ran through "
                                                 "TensorFlow Lite Micro"}} if board == "ethos-u" else {}
    return {"files": files, "bundle_files": extra, "logits": str(scratch / "logits.npy"), "run_seconds": run_seconds,
            "memory": memory, "notes": notes}


def int8_tflite(classifier: Classifier, scratch: Path, calibration: np.ndarray, mean: list[float],
                std: list[float]) -> bytes:
    """A full-integer int8 .tflite (int8 NHWC input and output) with every buffer inside the flatbuffer."""
    import importlib.util

    if importlib.util.find_spec("litert_torch") is None:
        raise UsageError("microcontroller bundles need the TFLite converter: pip install 'mobiclass[tflite]'")
    size = classifier.preprocessing.size
    float_path = scratch / "float.tflite"
    normalized = (calibration.astype(np.float32) - np.float32(mean)) / np.float32(std)

    def convert_and_quantize():
        import litert_torch  # its import prints too
        import torch

        from .onnx import plain_copy
        from .quantize import quantize_tflite_int8

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nhwc = litert_torch.to_channel_last_io(plain_copy(classifier), args=[0])
            litert_torch.convert(nhwc, (torch.zeros(1, size, size, 3),)).export(str(float_path))
        quantize_tflite_int8(float_path, scratch / "int8.tflite", [normalized])

    failed = []
    log = _captured(lambda: _recording(convert_and_quantize, failed))  # the converter's progress is not for users
    if failed:
        raise ToolchainError(f"the int8 TFLite conversion failed ({type(failed[0]).__name__}: {failed[0]}):\n"
                             f"{log[-2000:]}")
    return inline_buffers(scratch / "int8.tflite")


def _recording(function, failures: list) -> None:
    """Run `function`, keeping an exception it raises in `failures` (so that output captured around it is kept)."""
    try:
        function()
    except Exception as exc:  # noqa: BLE001 - reported whole by the caller, with the converter's log
        failures.append(exc)


def inline_buffers(path: Path) -> bytes:
    """The .tflite at `path` with its weights inside the flatbuffer, each buffer 16-byte aligned (TFLite Micro
    reads no external buffers; aligned weights and biases suit every MCU's loads)."""
    import flatbuffers
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(path)  # resolves buffers stored after the flatbuffer
    model.buffers = [_AlignedBuffer(b) for b in model.buffers]
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


class _AlignedBuffer:
    """A flatbuffer Buffer whose data vector starts on a 16-byte boundary (the TFLite converter's force_align)."""

    def __init__(self, buffer):
        self.data = None if buffer.data is None else bytes(np.asarray(buffer.data, dtype=np.uint8))

    def Pack(self, builder):  # noqa: N802 - the flatbuffers object API's name
        from ai_edge_litert import schema_py_generated as schema

        data = None
        if self.data:
            builder.StartVector(1, len(self.data), ARENA_ALIGNMENT)
            builder.head -= len(self.data)
            builder.Bytes[builder.head:builder.head + len(self.data)] = self.data
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        return schema.BufferEnd(builder)


def _interpreter(model: bytes, arena: int = PROBE_ARENA):
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise UsageError("microcontroller bundles are verified with TensorFlow Lite Micro: pip install "
                         "'mobiclass[mcu]'") from None
    loaded, failed = [], []
    report = _captured(lambda: _recording(lambda: loaded.append(runtime.Interpreter.from_bytes(
        model, arena_size=arena)), failed))
    if failed:
        reasons = [line for line in report.splitlines() if line.strip()][-4:]
        raise ToolchainError(f"TensorFlow Lite Micro cannot load the model ({failed[0]}): " + " / ".join(reasons))
    return loaded[0]


def arena_bytes(model: bytes) -> int:
    """The tensor arena TensorFlow Lite Micro allocates for `model`, as its recording allocator reports it."""
    interpreter = _interpreter(model)
    report = _captured(interpreter.print_allocations)
    for line in report.splitlines():
        if "Arena allocation total" in line:
            return int(line.split("total")[1].split()[0])
    raise ToolchainError(f"TensorFlow Lite Micro did not report its arena:\n{report[-1000:]}")


def _captured(function) -> str:
    """What `function` (C++ printing to the process's stdout and stderr) prints."""
    with tempfile.TemporaryFile() as log:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            function()
            sys.stdout.flush()
            sys.stderr.flush()
            ctypes.CDLL(None).fflush(None)
        finally:
            for fd, copy in enumerate(saved, start=1):
                os.dup2(copy, fd)
                os.close(copy)
        log.seek(0)
        return log.read().decode("utf-8", errors="replace")


def input_quantization(model: bytes) -> tuple[float, int]:
    details = _interpreter(model).get_input_details(0)["quantization_parameters"]
    return float(details["scales"][0]), int(details["zero_points"][0])


def pixel_tables(mean: list[float], std: list[float], scale: float, zero_point: int) -> np.ndarray:
    """(3, 256) int8: each channel's pixel value 0..255 as the model's int8 input, mean, std and the input
    quantization folded together. The board program looks pixels up in the same tables."""
    pixels = np.arange(256, dtype=np.float64)
    real = (pixels[None, :] - np.array(mean)[:, None]) / np.array(std)[:, None]
    return np.clip(np.round(real / scale) + zero_point, -128, 127).astype(np.int8)


def run_tflm(model: bytes, crops: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """Logits of uint8 NHWC crops, through the TensorFlow Lite Micro interpreter, as the board program feeds it."""
    interpreter = _interpreter(model)
    tables = pixel_tables(mean, std, *input_quantization(model))
    output = interpreter.get_output_details(0)["quantization_parameters"]
    out_scale, out_zero = float(output["scales"][0]), int(output["zero_points"][0])
    channel = np.arange(3)
    logits = []
    for crop in crops:
        interpreter.set_input(tables[channel, crop][None], 0)
        interpreter.invoke()
        logits.append((interpreter.get_output(0)[0].astype(np.float32) - out_zero) * out_scale)
    return np.stack(logits)


def compile_for_ethos_u(model: Path, scratch: Path) -> dict:
    """vela's compilation of `model` for an Ethos-U55 with 128 MACs: its SRAM, flash and inference time."""
    vela = Path(sys.executable).parent / "vela"
    if not vela.exists():
        raise UsageError("Ethos-U bundles are compiled by vela: pip install 'mobiclass[mcu]'")
    folder = scratch / "vela"
    done = subprocess.run([str(vela), str(model), "--accelerator-config", ETHOS_ACCELERATOR, "--output-dir",
                           str(folder)], capture_output=True, text=True)
    summaries = sorted(folder.glob("*_summary_*.csv"))
    if done.returncode != 0 or not summaries:
        raise ToolchainError(f"vela could not compile the model:\n{(done.stderr or done.stdout)[-2000:]}")
    with open(summaries[0], newline="") as f:
        row = next(csv.DictReader(f))
    counts = {kind: int(line.split("=")[1].split()[0]) for line in done.stdout.splitlines()
              for kind in ("CPU", "NPU") if line.startswith(f"{kind} operators")}
    return {"vela_sram_kib": float(row["sram_memory_used"]),
            "vela_flash_kib": float(row["off_chip_flash_memory_used"]) + float(row["on_chip_flash_memory_used"]),
            "vela_latency_ms": 1000 * float(row["inference_time"]), "vela_npu_operators": counts.get("NPU"),
            "vela_cpu_operators": counts.get("CPU"), "vela_system": row["system_config"],
            "vela_accelerator": ETHOS_ACCELERATOR}
