"""`mobiclass evaluate`: run a model over labelled images and write metrics, predictions, plots and a report."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from ..data.dataset import scan_labelled_images
from ..errors import ImageError, UsageError
from ..files import atomic_write_text
from ..runtime import load_classifier
from .metrics import calibration_bins, classification_report
from .plots import (confusion_matrix_plot, mistakes_plot, per_class_f1_plot, reliability_plot,
                    training_curves_plot)
from .report import write_html_report

MISTAKES_SHOWN = 12


def evaluate(model: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike | None = None,
             split: str | None = None, batch_size: int = 32) -> dict:
    """Evaluate `model` (a run folder or a model name) on `data`; returns the metrics written to metrics.json.

    Files go to `out` (default: ``RUN/evaluation`` for a run folder): metrics.json, predictions.csv,
    confusion_matrix.png, per_class_f1.png, reliability.png, mistakes.png, training_curves.png
    (runs only) and report.html.
    """
    classifier = load_classifier(model)
    samples, bad_files, used_split = scan_labelled_images(data, split)
    unknown = sorted({name for _, name in samples} - set(classifier.classes))
    if unknown:
        raise UsageError(f"{data} has classes the model does not know: {', '.join(unknown)} (the model knows "
                         f"{len(classifier.classes)}: {', '.join(classifier.classes[:10])}"
                         f"{', ...' if len(classifier.classes) > 10 else ''})")
    is_run = Path(model).is_dir()
    out = Path(out) if out else (Path(model) / "evaluation" if is_run else Path(f"evaluation-{Path(model).name}"))
    out.mkdir(parents=True, exist_ok=True)

    index = {name: i for i, name in enumerate(classifier.classes)}
    paths, labels, probabilities = [], [], []
    for (path, result), (_, name) in zip(classifier.predict_files([p for p, _ in samples], batch_size), samples):
        if isinstance(result, ImageError):
            bad_files.append({"path": path, "class": name, "error": str(result)})
            continue
        paths.append(path)
        labels.append(index[name])
        probabilities.append(result)
    labels, probabilities = np.array(labels), np.stack(probabilities)
    report = classification_report(labels, probabilities, classifier.classes)
    report["calibration"] = calibration_bins(labels, probabilities)
    report.update({"model": str(model), "data": str(data), "split": used_split, "bad_files": bad_files})

    predicted = probabilities.argmax(1)
    confidence = probabilities.max(1)
    wrong = sorted(np.flatnonzero(predicted != labels), key=lambda i: -confidence[i])[:MISTAKES_SHOWN]
    mistakes = [{"path": paths[i], "true": classifier.classes[labels[i]],
                 "predicted": classifier.classes[predicted[i]], "confidence": float(confidence[i])} for i in wrong]

    _write_predictions(out / "predictions.csv", paths, labels, predicted, confidence, classifier.classes)
    plots = {"Confusion matrix": confusion_matrix_plot(report, out / "confusion_matrix.png"),
             "Per-class F1": per_class_f1_plot(report, out / "per_class_f1.png"),
             "Reliability diagram": reliability_plot(report["calibration"], out / "reliability.png")}
    curves = training_curves_plot(Path(model) / "metrics.csv", out / "training_curves.png") if is_run else None
    if curves:
        plots["Training curves"] = curves
    grid = mistakes_plot(mistakes, out / "mistakes.png")
    if grid:
        plots["Most confidently wrong"] = grid
    report["mistakes"] = mistakes
    report["plots"] = {name: p.name for name, p in plots.items()}
    atomic_write_text(out / "metrics.json", json.dumps(report, indent=2) + "\n")
    write_html_report(out / "report.html", f"Evaluation of {classifier.name} on {data} ({used_split})", report,
                      plots, mistakes, {"model": model, "data": f"{data} ({used_split})",
                                        "unusable files skipped": len(bad_files)})
    report["out"] = str(out)
    return report


def _write_predictions(path: Path, paths, labels, predicted, confidence, classes) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "true", "predicted", "confidence"])
    for p, t, y, c in zip(paths, labels, predicted, confidence):
        writer.writerow([p, classes[t], classes[y], f"{c:.6f}"])
    atomic_write_text(path, buffer.getvalue())
