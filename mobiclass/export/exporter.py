"""`mobiclass export`: write deployable files, verify each against the PyTorch model, and a model card."""
from __future__ import annotations

import json
import os
import random
import shutil
import statistics
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.dataset import scan_dataset
from ..errors import ImageError, MobiclassError, UsageError
from ..files import atomic_write_text
from ..metadata import sidecar
from ..progress import ProgressReport
from ..run_folder import RunFolder, default_output, is_run_folder
from ..runtime import Classifier, load_torch_classifier, measure_speed, open_exported
from ..weights import DEFAULT_WEIGHTS
from .boards import BOARD_FORMATS, RKNN_DEVICES, export_board, precision_for, sample_paths
from .boards import crops as board_crops
from .onnx import export_onnx, export_tflite, export_torchscript
from .quantize import quantize_int8, quantize_tflite_int8

FP32_AGREEMENT = 0.999  # fp32 must give the same top-1 as PyTorch on at least this share of images
INT8_MAX_ACCURACY_LOSS = 0.01
CALIBRATION_IMAGES = 300
BOARD_CALIBRATION_IMAGES = 100  # as measured for every board toolchain
BOARD_MAX_ACCURACY_LOSS = {"int8": 0.02, "uint8": 0.02, "fp16": 0.01, "bf16": 0.01}  # fp32: must agree
# format name -> (file name, writer); ONNX is always written: int8 is made from it and it is the reference export.
FORMATS = {"onnx": ("model.onnx", export_onnx), "torchscript": ("model.torchscript.pt", export_torchscript),
           "tflite": ("model.tflite", export_tflite)}


class VerificationError(MobiclassError):
    """An exported file that does not give the answers the PyTorch model gives."""


def export(model: str | os.PathLike, out: str | os.PathLike | None = None, int8: bool = False,
           calibration: str | os.PathLike | None = None, exclude_first_last: bool = False, torchscript: bool = False,
           tflite: bool = False, seed: int = 0, formats: Sequence[str] = ("onnx",),
           weights: str | None = DEFAULT_WEIGHTS, progress: bool = False, half: bool = False,
           device: str = "rk3588") -> dict:
    """Export a run folder (or a named model) to each of `formats`, verify each against the PyTorch model, and
    return the model card.

    Files: ``onnx`` (always; int8 ONNX too with `int8`), ``torchscript``, ``tflite``. Board bundles, each in
    ``OUT/FORMAT/``: ``ncnn`` (fp32, or fp16 with `half`), ``rknn`` (int8, or fp16; for `device`), ``maixcam``
    (int8, or bf16), ``k210`` (uint8). int8 may lose at most 2 accuracy points against PyTorch on boards (1 for the
    int8 ONNX file), half precision 1 point; float formats must agree with PyTorch.

    Verification and calibration images come from the run's own split (validation / training), or
    from `calibration` (a dataset folder) when given or when the model has no run folder.
    """
    wanted = _formats(formats, torchscript, tflite)
    classifier = load_torch_classifier(model, weights)
    out = Path(out) if out else default_output(model, "export")
    out.mkdir(parents=True, exist_ok=True)
    verify_set, train_set = _image_sets(model, classifier, calibration, seed)

    def predictions(runner: Classifier, what: str) -> np.ndarray:
        return _predictions(runner, verify_set, f"verifying {what}", progress)

    reference = predictions(classifier, "pytorch")
    card = {"model": str(model), "architecture": classifier.architecture, "classes": classifier.classes,
            "verified_on": len(verify_set), "formats": {"pytorch": _describe(classifier, reference, verify_set)}}
    problems = []
    for name in [n for n in wanted if n in FORMATS]:
        file_name, write = FORMATS[name]
        exported = open_exported(write(classifier, out / file_name), "onnxruntime" if name == "onnx" else "auto")
        card["formats"][name] = _describe(exported, predictions(exported, name), verify_set, reference,
                                          out / file_name)
        if card["formats"][name]["top1_agreement"] < FP32_AGREEMENT:
            problems.append(f"{name} agrees with PyTorch on only {card['formats'][name]['top1_agreement']:.2%} "
                            f"of images")
    int8_files = [("onnx-int8", "model.int8.onnx", lambda batches: quantize_int8(
        out / "model.onnx", out / "model.int8.onnx", batches, exclude_first_last))] if int8 else []
    if int8 and "tflite" in wanted:
        int8_files.append(("tflite-int8", "model.int8.tflite", lambda batches: _int8_tflite(out, batches)))
    for name, file_name, write_int8 in int8_files:
        quantized = open_exported(write_int8(_calibration_batches(classifier, train_set)), "onnxruntime"
                                  if name == "onnx-int8" else "auto")
        result = {**_describe(quantized, predictions(quantized, name), verify_set, reference, out / file_name),
                  "precision": "int8"}
        if name == "onnx-int8":
            result["excluded_first_last"] = exclude_first_last
        card["formats"][name] = result
        if "accuracy" in result:
            loss = card["formats"]["pytorch"]["accuracy"] - result["accuracy"]
        else:  # unlabelled images: the share of changed answers stands in for the accuracy lost
            loss = 1 - result["top1_agreement"]
        result["accuracy_loss"] = loss
        if exceeds(loss, INT8_MAX_ACCURACY_LOSS):
            problems.append(f"int8 {'TFLite ' if name == 'tflite-int8' else ''}loses {loss:.1%} accuracy (at most "
                            f"{INT8_MAX_ACCURACY_LOSS:.0%} allowed)")
    boards = [n for n in wanted if n in BOARD_FORMATS]
    if boards:
        problems += _export_boards(boards, classifier, out, card, verify_set, train_set, reference, half, device)
    card["verified"] = not problems
    card["problems"] = problems
    atomic_write_text(out / "model-card.json", json.dumps(card, indent=2) + "\n")
    card["out"] = str(out)
    if problems:
        raise VerificationError("export written but NOT verified: " + "; ".join(problems) +
                                f" (details in {out / 'model-card.json'})", code="not_verified",
                                int8_retry=any(p.startswith("int8 loses") for p in problems) and not exclude_first_last)
    return card


def _int8_tflite(out: Path, batches) -> Path:
    """model.int8.tflite from model.tflite, with the float file's metadata beside it."""
    path = quantize_tflite_int8(out / "model.tflite", out / "model.int8.tflite", batches)
    shutil.copy(sidecar(out / "model.tflite"), sidecar(path))
    return path


def _export_boards(boards: list[str], classifier: Classifier, out: Path, card: dict, verify_set: list,
                   train_set: list, reference: np.ndarray, half: bool, device: str) -> list[str]:
    """Each board bundle, verified on its simulator against PyTorch; the problems found."""
    if device not in RKNN_DEVICES:
        raise UsageError(f"device must be one of {', '.join(RKNN_DEVICES)}, got {device!r}")
    precisions = {board: precision_for(board, half) for board in boards}
    verify, kept = board_crops(classifier, [p for p, _ in verify_set])
    calibration, _ = board_crops(classifier, sample_paths([p for p, _ in train_set], BOARD_CALIBRATION_IMAGES))
    labels = np.array([-2 if verify_set[i][1] is None else verify_set[i][1] for i in kept])
    problems = []
    for board in boards:
        entry = export_board(board, classifier, out / board, verify, calibration, precisions[board], device)
        predicted = entry.pop("logits").argmax(1)
        entry["top1_agreement"] = float((predicted == reference[kept]).mean())
        if (labels >= 0).any():
            entry["accuracy"] = float((predicted[labels >= 0] == labels[labels >= 0]).mean())
            entry["accuracy_loss"] = card["formats"]["pytorch"]["accuracy"] - entry["accuracy"]
        card["formats"][board] = entry
        loss = entry.get("accuracy_loss", 1 - entry["top1_agreement"])
        allowed = BOARD_MAX_ACCURACY_LOSS.get(entry["precision"])
        if allowed is None and entry["top1_agreement"] < FP32_AGREEMENT:
            problems.append(f"{board} agrees with PyTorch on only {entry['top1_agreement']:.2%} of images")
        elif allowed is not None and exceeds(loss, allowed):
            problems.append(f"{board} ({entry['precision']}) loses {loss:.1%} accuracy (at most {allowed:.0%} "
                            f"allowed)")
    return problems


def _formats(formats: Sequence[str] | str, torchscript: bool, tflite: bool) -> list[str]:
    """The formats asked for, ONNX first; `torchscript` and `tflite` add theirs (the older way of asking)."""
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [n.strip() for n in names if n.strip()] + ["torchscript"] * torchscript + ["tflite"] * tflite
    unknown = [n for n in names if n not in FORMATS and n not in BOARD_FORMATS]
    if unknown:
        raise UsageError(f"unknown export format(s) {', '.join(unknown)}; formats: "
                         f"{', '.join([*FORMATS, *BOARD_FORMATS])}")
    return list(dict.fromkeys(["onnx", *names]))


def exceeds(value: float, limit: float) -> bool:
    """`value > limit` for differences of accuracies: 0.86 - 0.85 is 0.010000000000000009 in floating point."""
    return value > limit + 1e-9


def _image_sets(model, classifier: Classifier, calibration, seed: int) -> tuple[list, list]:
    """(verification images with labels or None, calibration images) as (path, label index) pairs."""
    index = classifier.class_index
    split = RunFolder(model).read_split() if calibration is None and is_run_folder(model) else None
    if split is not None:
        return ([(p, index.get(c)) for p, c in split["val"]], [(p, index.get(c)) for p, c in split["train"]])
    if calibration is None:
        raise UsageError(f"{model} has no run folder with a split to verify and calibrate on, and no calibration "
                         f"images were given", code="needs_calibration")
    dataset = scan_dataset(calibration, seed=seed)
    return tuple([(s.path, index.get(dataset.classes[s.label])) for s in dataset.splits[split]]
                 for split in ("val", "train"))


def _calibration_batches(classifier: Classifier, images: list, batch_size: int = 16):
    """A seeded sample of a few hundred real training images, preprocessed as at inference."""
    sample = random.Random(0).sample(images, min(CALIBRATION_IMAGES, len(images)))
    arrays = [a for a in map(classifier.prepare, [p for p, _ in sample]) if isinstance(a, np.ndarray)]
    for i in range(0, len(arrays), batch_size):
        yield np.stack(arrays[i:i + batch_size])


def _predictions(classifier: Classifier, images: list, what: str, progress: bool) -> np.ndarray:
    with ProgressReport(what, len(images), enabled=progress) as advance:
        results = list(classifier.predict_files([p for p, _ in images], on_batch=advance))
    return np.array([-1 if isinstance(r, ImageError) else int(r.argmax()) for _, r in results])


def _describe(classifier: Classifier, predicted: np.ndarray, images: list, reference: np.ndarray | None = None,
              path: Path | None = None) -> dict:
    labels = np.array([-2 if label is None else label for _, label in images])
    labelled = labels >= 0
    size = classifier.preprocessing.size
    result = {"latency_b1_ms": 1000 * statistics.median(measure_speed(classifier.predict_arrays, (1, 3, size, size),
                                                                      20))}
    if labelled.any():
        result["accuracy"] = float((predicted[labelled] == labels[labelled]).mean())
    if reference is not None:
        result["top1_agreement"] = float((predicted == reference).mean())
    if path is not None:
        result["file"] = path.name
        result["size_mb"] = path.stat().st_size / 1e6
    return result
