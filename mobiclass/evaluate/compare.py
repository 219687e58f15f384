"""`mobiclass compare`: the table the MobileNet papers draw, measured on this machine in one run."""
from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import numpy as np

from ..errors import MobiclassError, WeightsError
from ..files import atomic_write_text, write_csv
from ..loading import DEFAULT_ENGINE, on_engine
from ..metadata import file_kind
from ..models import count_macs, count_parameters
from ..progress import ProgressReport
from ..runtime import Classifier, load_torch_classifier, measure_speed, open_exported
from ..weights import DEFAULT_WEIGHTS

COLUMNS = ["model", "engine", "params", "macs", "size_mb", "resolution", "latency_b1_ms", "throughput_b32",
           "threads", "accuracy", "note"]


def compare(models: list[str | os.PathLike], data: str | os.PathLike | None = None,
            out: str | os.PathLike | None = None, runs: int = 20, weights: str | None = DEFAULT_WEIGHTS,
            engine: str = DEFAULT_ENGINE, progress: bool = False) -> list[dict]:
    """Parameters, multiply-adds, fp32 size, latency at batch 1 and throughput at batch 32 of each model on
    `engine`, and accuracy on `data` when given; all measured in this process so the ratios compare.

    A model name whose pretrained weights are not available here is still measured, with untrained weights: its
    accuracy is reported as not available, with the reason in `note`."""
    rows = []
    with ProgressReport("comparing", len(models), enabled=progress, interval=0) as advance:
        for model in models:
            rows.append(_measure(model, data, out, runs, weights, engine))
            advance(1, f"{model}: {rows[-1]['latency_b1_ms']:.1f} ms at batch 1")
    if out is not None:
        write_comparison(rows, Path(out))
    return rows


def _measure(model, data, out, runs: int, weights, engine: str) -> dict:
    """One row of the comparison."""
    from .evaluation import evaluate_classifier

    note = None
    try:
        classifier, (params, macs, megabytes) = _load_and_count(model, weights, engine)
    except WeightsError as exc:
        if exc.code != "weights_unavailable":
            raise
        classifier, (params, macs, megabytes) = _load_and_count(model, "none", engine)
        note = "no pretrained weights here"
    size, speed = classifier.preprocessing.size, classifier.predict_arrays
    row = {"model": str(model), "engine": classifier.engine.name, "params": params, "macs": macs,
           "size_mb": megabytes, "resolution": size, "threads": _threads(),
           "latency_b1_ms": 1000 * statistics.median(measure_speed(speed, (1, 3, size, size), runs)),
           "throughput_b32": 32 / statistics.median(measure_speed(speed, (32, 3, size, size), max(3, runs // 4))),
           "accuracy": None, "note": note}
    if data is not None and note is None:
        try:
            row["accuracy"] = evaluate_classifier(classifier, data, Path(out or ".") / "evaluations" /
                                                  Path(model).name, label=str(model))["accuracy"]
        except MobiclassError as exc:
            row["note"] = _short_reason(exc)
    return row


def _short_reason(error: MobiclassError) -> str:
    """Why a model has no accuracy, in a few words for a table cell (the full message is long)."""
    if error.code == "unknown_classes":
        return "its classes are not the data's"
    return str(error).splitlines()[0][:80]


def _load_and_count(model, weights, engine: str) -> tuple[Classifier, tuple[int | None, int | None, float]]:
    """The classifier on `engine`, with (parameters, multiply-adds, MB): counted on the PyTorch model when there
    is one, else read from the exported file."""
    if file_kind(model):
        classifier = open_exported(model, engine)
        return classifier, _file_size(Path(model))
    torch_classifier = load_torch_classifier(model, weights)
    module = torch_classifier.module
    megabytes = sum(t.numel() * t.element_size() for t in module.state_dict().values()) / 1e6
    counts = (count_parameters(module), count_macs(module, torch_classifier.preprocessing.size), megabytes)
    return on_engine(torch_classifier, engine), counts


def _file_size(path: Path) -> tuple[int | None, None, float]:
    """Parameters stored in an ONNX file (BatchNorm is folded away, so fewer than the PyTorch count); other
    exported formats report their file size only."""
    if file_kind(path) != "onnx":
        return None, None, path.stat().st_size / 1e6
    import onnx

    model = onnx.load(str(path))
    stored = (onnx.TensorProto.FLOAT, onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer
                 if t.data_type in stored and not t.name.endswith(("_scale", "_zero_point")))
    return params, None, path.stat().st_size / 1e6


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def write_comparison(rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "compare.csv", COLUMNS, rows)
    atomic_write_text(out / "compare.json", json.dumps(rows, indent=2) + "\n")
    _scatter(rows, out / "compare.png")


def _scatter(rows: list[dict], path: Path) -> None:
    from .plots import plt, save_figure

    with_accuracy = all(r["accuracy"] is not None for r in rows)
    figure, axes = plt.subplots(figsize=(6, 4.5))
    for row in rows:
        y = row["accuracy"] if with_accuracy else (row["params"] or 0) / 1e6
        axes.scatter(row["latency_b1_ms"], y, s=30 + (row["macs"] or 0) / 1e7)
        axes.annotate(Path(row["model"]).name, (row["latency_b1_ms"], y), textcoords="offset points", xytext=(5, 5),
                      fontsize=8)
    axes.set_xlabel(f"latency at batch 1 (ms, {rows[0]['threads']} threads)")
    axes.set_ylabel("accuracy" if with_accuracy else "parameters (millions)")
    axes.set_title(("Accuracy" if with_accuracy else "Size") + " against latency (marker size: multiply-adds)")
    axes.grid(alpha=0.3)
    save_figure(figure, path)
