"""`mobiclass evaluate`: run a model over labelled images and write metrics, predictions, plots and a report."""
from __future__ import annotations

import json
import os
from pathlib import Path
from collections.abc import Callable

import numpy as np
from PIL import Image

from ..data import load_image
from ..data.dataset import scan_labelled_images
from ..errors import ImageError, UsageError
from ..explain import GradCam
from ..files import atomic_write_text, write_csv
from ..loading import DEFAULT_ENGINE, load_classifier
from ..metadata import file_kind
from ..progress import ProgressReport
from ..run_folder import RunFolder, default_output, is_run_folder
from ..runtime import Classifier
from ..runtime.classifier import softmax
from ..weights import DEFAULT_WEIGHTS
from .metrics import calibration_bins, classification_report
from .plots import (confusion_matrix_plot, mistakes_plot, per_class_f1_plot, reliability_plot,
                    training_curves_plot)
from .report import write_html_report

MISTAKES_SHOWN = 12


def evaluate(model: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike | None = None,
             split: str | None = None, batch_size: int = 32, weights: str | None = DEFAULT_WEIGHTS,
             engine: str = DEFAULT_ENGINE, progress: bool = False, allow_outside: bool = False) -> dict:
    """Evaluate `model` (a run folder, a model name or an exported file) on `data`, on the same engine
    predict and serve use; returns the metrics written to metrics.json.

    Files go to `out` (default: ``RUN/evaluation`` for a run folder): metrics.json, predictions.csv,
    confusion_matrix.png, per_class_f1.png, reliability.png, mistakes.png, training_curves.png
    (runs only) and report.html. `progress` shows a bar (or plain lines in a log) while images are scored.
    """
    classifier = load_classifier(model, weights, engine)

    def explainer() -> GradCam:  # the PyTorch twin of the model, loaded only when there are mistakes to explain
        return GradCam(classifier if classifier.engine.module is not None else
                       load_classifier(model, weights, "torch", progress=False))

    return evaluate_classifier(classifier, data, Path(out) if out else default_output(model, "evaluation"), split,
                               batch_size, label=Path(model).name,
                               run=RunFolder(model) if is_run_folder(model) else None,
                               progress=progress, allow_outside=allow_outside,
                               explainer=None if file_kind(model) else explainer)


def evaluate_classifier(classifier: Classifier, data: str | os.PathLike, out: Path, split: str | None = None,
                        batch_size: int = 32, label: str = "", run: RunFolder | None = None, progress: bool = False,
                        allow_outside: bool = False, explainer: Callable[[], GradCam] | None = None) -> dict:
    """:func:`evaluate` for a classifier already loaded; `run` adds its training curves, config and data counts to
    the report; `explainer` gives the Grad-CAM that draws, over each confident mistake, where the model looked."""
    samples, bad_files, used_split = scan_labelled_images(data, split, allow_outside=allow_outside)
    unknown = sorted({name for _, name in samples} - set(classifier.classes))
    if unknown:
        raise UsageError(f"{data} has classes the model does not know: {', '.join(unknown)} (the model knows "
                         f"{len(classifier.classes)}: {', '.join(classifier.classes[:10])}"
                         f"{', ...' if len(classifier.classes) > 10 else ''})", code="unknown_classes")
    out.mkdir(parents=True, exist_ok=True)

    index = classifier.class_index
    paths, labels, probabilities = [], [], []
    with ProgressReport("evaluating", len(samples), enabled=progress) as advance:
        scored = list(classifier.predict_files([p for p, _ in samples], batch_size, advance))
    for (path, result), (_, name) in zip(scored, samples):
        if isinstance(result, ImageError):
            bad_files.append({"path": path, "class": name, "error": str(result)})
            continue
        paths.append(path)
        labels.append(index[name])
        probabilities.append(result)
    labels, probabilities = np.array(labels), np.stack(probabilities)
    report = classification_report(labels, probabilities, classifier.classes)
    report["calibration"] = calibration_bins(labels, probabilities)
    report["temperature"] = classifier.temperature
    if classifier.temperature != 1.0:  # the same logits without the temperature: what calibration changed
        logits = np.log(np.clip(probabilities, 1e-30, 1.0)) * classifier.temperature
        report["calibration_without_temperature"] = calibration_bins(labels, softmax(logits))
    report.update({"model": label or classifier.name, "engine": classifier.engine.name, "data": str(data),
                   "split": used_split, "bad_files": bad_files,
                   "provisional": bool(run and run.read_manifest().get("provisional"))})  # training not ended

    predicted = probabilities.argmax(1)
    confidence = probabilities.max(1)
    wrong = sorted(np.flatnonzero(predicted != labels), key=lambda i: -confidence[i])[:MISTAKES_SHOWN]
    mistakes = [{"path": paths[i], "true": classifier.classes[labels[i]],
                 "predicted": classifier.classes[predicted[i]], "confidence": float(confidence[i])} for i in wrong]

    _write_predictions(out / "predictions.csv", paths, labels, predicted, confidence, classifier.classes)
    plots = {"Confusion matrix": confusion_matrix_plot(report, out / "confusion_matrix.png"),
             "Per-class F1": per_class_f1_plot(report, out / "per_class_f1.png"),
             "Reliability diagram": reliability_plot(report["calibration"], out / "reliability.png")}
    curves = training_curves_plot(run.read_history(), out / "training_curves.png") if run else None
    if curves:
        plots["Training curves"] = curves
    grid = mistakes_plot(mistakes, out / "mistakes.png", _where_it_looked(explainer, mistakes, classifier.classes))
    if grid:
        plots["Most confidently wrong"] = grid
    report["mistakes"] = mistakes
    report["plots"] = {name: p.name for name, p in plots.items()}
    atomic_write_text(out / "metrics.json", json.dumps(report, indent=2) + "\n")
    name = label or classifier.architecture
    write_html_report(out / "report.html", f"Evaluation of {name} on {Path(data).name} ({used_split})", report,
                      plots, mistakes, {"model": name, "architecture": classifier.architecture,
                                        "engine": classifier.engine.name, "data": f"{data} ({used_split})",
                                        **_calibration_rows(report),
                                        "unusable files skipped": len(bad_files)}, _run_tables(run))
    report["out"] = str(out)
    return report


def _where_it_looked(explainer: Callable[[], GradCam] | None, mistakes: list[dict], classes: list[str]
                     ) -> list[Image.Image | None] | None:
    """Each mistake's photo with the Grad-CAM of the class it was wrongly given (its peak is added to the
    mistake), or None where the photo cannot be read."""
    if explainer is None or not mistakes:
        return None
    cam = explainer()
    overlays: list[Image.Image | None] = []
    for mistake in mistakes:
        try:
            image = load_image(mistake["path"])
        except ImageError:
            overlays.append(None)
            continue
        [explanation] = cam.explain([image], [classes.index(mistake["predicted"])])
        mistake["peak"] = list(explanation.peak)
        overlays.append(explanation.overlay(image, side=192))
    return overlays


def _calibration_rows(report: dict) -> dict:
    if "calibration_without_temperature" not in report:
        return {"temperature": "1 (not calibrated)"}
    return {"temperature": f"{report['temperature']:.3f} (fitted on the validation split after training)",
            "ECE without the temperature": f"{report['calibration_without_temperature']['ece']:.4f}"}


def _run_tables(run: RunFolder | None) -> dict[str, tuple[list[str], list[list]]]:
    """The run's training configuration and its data counts (per class and split), for the report."""
    if run is None:
        return {}
    tables = {}
    config = run.read_manifest().get("training") or {}
    if config:
        tables["Training configuration"] = (["option", "value"], [[k, v] for k, v in config.items()])
    counts = run.read_data_report().get("counts") or {}
    if counts:
        splits = list(counts)
        classes = list(dict.fromkeys(name for split in splits for name in counts[split]))
        rows = [[name, *(counts[split].get(name, 0) for split in splits)] for name in classes]
        tables["Training data"] = (["class", *splits], rows + [["total", *(sum(counts[s].values()) for s in splits)]])
    return tables


def _write_predictions(path: Path, paths, labels, predicted, confidence, classes) -> None:
    write_csv(path, ["path", "true", "predicted", "confidence"],
              ([p, classes[t], classes[y], f"{c:.6f}"] for p, t, y, c in zip(paths, labels, predicted, confidence)))
