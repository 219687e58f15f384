"""`mobiclass export`: write deployable files, verify each against the PyTorch model, and a model card."""
from __future__ import annotations

import json
import os
import random
import statistics
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.dataset import scan_dataset
from ..errors import ImageError, MobiclassError, UsageError
from ..files import atomic_write_text
from ..progress import ProgressReport
from ..run_folder import RunFolder, default_output, is_run_folder
from ..runtime import Classifier, load_torch_classifier, measure_speed, open_exported
from ..weights import DEFAULT_WEIGHTS
from .onnx import export_onnx, export_tflite, export_torchscript
from .quantize import quantize_int8

FP32_AGREEMENT = 0.999  # fp32 must give the same top-1 as PyTorch on at least this share of images
INT8_MAX_ACCURACY_LOSS = 0.01
CALIBRATION_IMAGES = 300
# format name -> (file name, writer); ONNX is always written: int8 is made from it and it is the reference export.
FORMATS = {"onnx": ("model.onnx", export_onnx), "torchscript": ("model.torchscript.pt", export_torchscript),
           "tflite": ("model.tflite", export_tflite)}


class VerificationError(MobiclassError):
    """An exported file that does not give the answers the PyTorch model gives."""


def export(model: str | os.PathLike, out: str | os.PathLike | None = None, int8: bool = False,
           calibration: str | os.PathLike | None = None, exclude_first_last: bool = False, torchscript: bool = False,
           tflite: bool = False, seed: int = 0, formats: Sequence[str] = ("onnx",),
           weights: str | None = DEFAULT_WEIGHTS, progress: bool = False) -> dict:
    """Export a run folder (or a named model) to each of `formats` (``onnx``, ``torchscript``, ``tflite``; ONNX
    always, and int8 ONNX with `int8`), verify each against the PyTorch model, and return the model card.

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
    for name in wanted:
        file_name, write = FORMATS[name]
        exported = open_exported(write(classifier, out / file_name), "onnxruntime" if name == "onnx" else "auto")
        card["formats"][name] = _describe(exported, predictions(exported, name), verify_set, reference,
                                          out / file_name)
        if card["formats"][name]["top1_agreement"] < FP32_AGREEMENT:
            problems.append(f"{name} agrees with PyTorch on only {card['formats'][name]['top1_agreement']:.2%} "
                            f"of images")
    if int8:
        batches = _calibration_batches(classifier, train_set)
        quantized = open_exported(quantize_int8(out / "model.onnx", out / "model.int8.onnx", batches,
                                                exclude_first_last), "onnxruntime")
        result = _describe(quantized, predictions(quantized, "onnx-int8"), verify_set, reference,
                           out / "model.int8.onnx")
        result["excluded_first_last"] = exclude_first_last
        card["formats"]["onnx-int8"] = result
        if "accuracy" in result:
            loss = card["formats"]["pytorch"]["accuracy"] - result["accuracy"]
        else:  # unlabelled images: the share of changed answers stands in for the accuracy lost
            loss = 1 - result["top1_agreement"]
        result["accuracy_loss"] = loss
        if exceeds(loss, INT8_MAX_ACCURACY_LOSS):
            problems.append(f"int8 loses {loss:.1%} accuracy (at most {INT8_MAX_ACCURACY_LOSS:.0%} allowed)")
    card["verified"] = not problems
    card["problems"] = problems
    atomic_write_text(out / "model-card.json", json.dumps(card, indent=2) + "\n")
    card["out"] = str(out)
    if problems:
        raise VerificationError("export written but NOT verified: " + "; ".join(problems) +
                                f" (details in {out / 'model-card.json'})", code="not_verified",
                                int8_retry=any(p.startswith("int8") for p in problems) and not exclude_first_last)
    return card


def _formats(formats: Sequence[str] | str, torchscript: bool, tflite: bool) -> list[str]:
    """The formats asked for, ONNX first; `torchscript` and `tflite` add theirs (the older way of asking)."""
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [n.strip() for n in names if n.strip()] + ["torchscript"] * torchscript + ["tflite"] * tflite
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise UsageError(f"unknown export format(s) {', '.join(unknown)}; formats: {', '.join(FORMATS)}")
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
