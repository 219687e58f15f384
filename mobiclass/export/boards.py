"""Bundles for boards: ncnn (phones, Raspberry Pi), Rockchip NPUs (rknn), MaixCAM (cvimodel), K210 (kmodel) and
microcontrollers (tflm: TensorFlow Lite Micro; ethos-u: an Ethos-U NPU beside a Cortex-M, see :mod:`.mcu`).

Every board takes the image as 8-bit RGB at the model's input size and applies the mean and scale itself, so each
conversion is verified the same way: our own resize and center crop give uint8 images, the vendor's simulator (the
ncnn runtime here) runs them through the converted model, and its answers are compared with PyTorch's.
"""
from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import Preprocessing, load_image
from ..errors import ImageError, UsageError
from ..runtime import Classifier
from ..targets import Target
from . import bundles
from .board_graph import export_board_onnx
from .toolchains import ToolchainError, run_worker

BOARD_FORMATS = ("ncnn", "rknn", "maixcam", "k210", "tflm", "ethos-u")
RKNN_DEVICES = ("rk3588", "rk3566", "rk3568")


@dataclass(frozen=True)
class BoardSpec:
    precisions: tuple[str, ...]  # the first is the default; "--half" picks the half-precision one
    simulator: str


SPECS = {"ncnn": BoardSpec(("fp32", "fp16"), "ncnn runtime (x86)"),
         "rknn": BoardSpec(("int8", "fp16"), "rknn-toolkit2 simulator"),
         "maixcam": BoardSpec(("int8", "bf16"), "tpu-mlir cv181x cmodel"),
         "k210": BoardSpec(("uint8",), "nncase 1.9 simulator"),
         "tflm": BoardSpec(("int8",), "TensorFlow Lite Micro interpreter (reference kernels)"),
         "ethos-u": BoardSpec(("int8",), "TensorFlow Lite Micro interpreter, on the int8 model vela compiles (the "
                                         "compiled Ethos-U operator has no CPU reference to run)")}


def precision_for(board: str, half: bool) -> str:
    spec = SPECS[board]
    if half and len(spec.precisions) < 2:
        raise UsageError(f"{board} has no half-precision build (it runs {spec.precisions[0]} only)")
    return spec.precisions[1 if half else 0]


def pixel_scaling(preprocessing: Preprocessing) -> tuple[list[float], list[float]]:
    """Our normalisation, (x / 255 - mean) / std, in 0..255 units: (x - mean_px) / std_px."""
    return [255.0 * m for m in preprocessing.mean], [255.0 * s for s in preprocessing.std]


def crops(classifier: Classifier, paths: list[str]) -> tuple[np.ndarray, list[int]]:
    """uint8 RGB crops (N, H, W, 3) as our preprocessing makes them before normalising, and which paths decoded."""
    kept, images = [], []
    for i, path in enumerate(paths):
        try:
            image = load_image(path, min_size=classifier.preprocessing.resize)
        except ImageError:
            continue
        kept.append(i)
        images.append(np.asarray(classifier.preprocessing.crop(image), dtype=np.uint8))
    return np.stack(images), kept


def export_board(board: str, classifier: Classifier, folder: Path, verify: np.ndarray, calibration: np.ndarray,
                 precision: str, device: str = "rk3588", target: Target | None = None) -> dict:
    """Convert, write the bundle into `folder`, and run the converted model on `verify` (uint8 NHWC crops).
    With `target`, a microcontroller model whose arena exceeds the target's RAM is refused before it is written.

    Returns the card entry (files, precision, simulator, conversion seconds, latency) and "logits" for the caller
    to score against PyTorch."""
    from . import mcu

    if board not in mcu.MCU_FORMATS:  # a microcontroller's folder appears once its model is known to fit
        folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mobiclass-{board}-") as scratch:
        scratch = Path(scratch)
        np.save(scratch / "verify.npy", verify)
        np.save(scratch / "calibration.npy", calibration)
        mean, std = pixel_scaling(classifier.preprocessing)
        request = {"scratch": str(scratch), "out": str(folder.resolve()), "precision": precision,
                   "mean": mean, "std": std, "size": classifier.preprocessing.size, "device": device,
                   "verify": str(scratch / "verify.npy"), "calibration": str(scratch / "calibration.npy")}
        if target is not None:
            request.update(target=target.name, ram_limit_kb=target.ram_kb, memory_note=target.memory_note)
        if board in mcu.MCU_FORMATS:
            answer = mcu.convert(board, classifier, request)
        else:
            request["onnx"] = str(export_board_onnx(classifier, scratch / "model.onnx"))
            answer = _convert_ncnn(request) if board == "ncnn" else run_worker(board, request)
        logits = np.load(answer["logits"])
    files = answer["files"] + answer.get("bundle_files", []) if board in mcu.MCU_FORMATS else \
        bundles.write(board, classifier, folder, answer["files"], precision, device)
    return {"folder": folder.name, "files": files, "precision": precision, "simulator": SPECS[board].simulator,
            "conversion_seconds": time.perf_counter() - started - answer.get("run_seconds", 0.0),
            "simulator_ms_per_image": 1000 * answer.get("run_seconds", 0.0) / max(len(verify), 1),
            "size_mb": sum((folder / f).stat().st_size for f in answer["files"]) / 1e6, "logits": logits,
            **({"compiler_memory": answer["memory"]} if "memory" in answer else {}), **answer.get("notes", {}),
            **({"device": device} if board == "rknn" else {})}


def _convert_ncnn(request: dict) -> dict:
    """pnnx converts the board graph; the ncnn runtime (both installed in our own environment) runs it."""
    try:
        import ncnn
    except ImportError:
        raise UsageError("the ncnn format needs pnnx and ncnn: pip install 'mobiclass[ncnn]'") from None
    scratch, out = Path(request["scratch"]), Path(request["out"])
    pnnx = shutil.which("pnnx", path=str(Path(sys.executable).parent)) or shutil.which("pnnx")
    size = request["size"]
    done = subprocess.run([pnnx, "model.onnx", f"inputshape=[1,3,{size},{size}]",
                           f"fp16={int(request['precision'] == 'fp16')}"], cwd=scratch, capture_output=True, text=True)
    if done.returncode != 0 or not (scratch / "model.ncnn.param").is_file():
        raise ToolchainError(f"pnnx could not convert the model:\n{(done.stderr or done.stdout)[-2000:]}")
    for name in ("model.ncnn.param", "model.ncnn.bin"):
        shutil.copy(scratch / name, out / name)
    net = ncnn.Net()
    net.load_param(str(out / "model.ncnn.param"))
    net.load_model(str(out / "model.ncnn.bin"))
    verify, logits = np.load(request["verify"]), []
    norm = [1.0 / s for s in request["std"]]
    started = time.perf_counter()
    for image in verify:
        mat = ncnn.Mat.from_pixels(np.ascontiguousarray(image), ncnn.Mat.PixelType.PIXEL_RGB, size, size)
        mat.substract_mean_normalize(request["mean"], norm)
        extractor = net.create_extractor()
        extractor.input("in0", mat)
        _, output = extractor.extract("out0")
        logits.append(np.array(output).reshape(-1))
    np.save(scratch / "logits.npy", np.stack(logits))
    return {"files": ["model.ncnn.param", "model.ncnn.bin"], "logits": str(scratch / "logits.npy"),
            "run_seconds": time.perf_counter() - started}


def sample_paths(paths: list[str], count: int, seed: int = 0) -> list[str]:
    return random.Random(seed).sample(paths, min(count, len(paths)))
