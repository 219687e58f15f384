"""`mobiclass compare`: the table the MobileNet papers draw, measured on this machine in one run."""
from __future__ import annotations

import csv
import io
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import MobiclassError
from ..files import atomic_write_text
from ..models import count_macs, count_parameters
from ..runtime import Classifier, load_classifier

COLUMNS = ["model", "params", "macs", "size_mb", "resolution", "latency_b1_ms", "throughput_b32",
           "threads", "accuracy"]


def measure_speed(classifier: Classifier, batch: int, runs: int, warmup: int = 3) -> list[float]:
    """Seconds per forward pass at `batch` images through the classifier's engine, after a warm-up."""
    size = classifier.preprocessing.size
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        classifier.predict_arrays(x)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def compare(models: list[str | os.PathLike], data: str | os.PathLike | None = None,
            out: str | os.PathLike | None = None, runs: int = 20) -> list[dict]:
    """Parameters, multiply-adds, fp32 size, latency at batch 1 and throughput at batch 32 of each model,
    and accuracy on `data` when given; all measured in this process so the ratios compare."""
    from .evaluation import evaluate

    rows = []
    for model in models:
        classifier = load_classifier(model)
        size = classifier.preprocessing.size
        if classifier.model is None:  # an exported ONNX file: count what the file holds
            params, macs, megabytes = _onnx_size(Path(model))
        else:
            state = classifier.model.state_dict()
            params, macs = count_parameters(classifier.model), count_macs(classifier.model, size)
            megabytes = sum(t.numel() * t.element_size() for t in state.values()) / 1e6
        row = {"model": str(model), "params": params, "macs": macs, "size_mb": megabytes,
               "resolution": size, "threads": torch.get_num_threads(),
               "latency_b1_ms": 1000 * statistics.median(measure_speed(classifier, 1, runs)),
               "throughput_b32": 32 / statistics.median(measure_speed(classifier, 32, max(3, runs // 4))),
               "accuracy": None}
        if data is not None:
            try:
                row["accuracy"] = evaluate(model, data, out=Path(out or ".") / "evaluations" / Path(model).name)[
                    "accuracy"]
            except MobiclassError as exc:
                row["note"] = str(exc).splitlines()[0]
        rows.append(row)
    if out is not None:
        write_comparison(rows, Path(out))
    return rows


def _onnx_size(path: Path) -> tuple[int, None, float]:
    """Parameters stored in an ONNX file (BatchNorm is folded away, so fewer than the PyTorch count)."""
    import onnx

    model = onnx.load(str(path))
    stored = (onnx.TensorProto.FLOAT, onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer
                 if t.data_type in stored and not t.name.endswith(("_scale", "_zero_point")))
    return params, None, path.stat().st_size / 1e6


def write_comparison(rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS + ["note"], lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "compare.csv", buffer.getvalue())
    atomic_write_text(out / "compare.json", json.dumps(rows, indent=2) + "\n")
    _scatter(rows, out / "compare.png")


def _scatter(rows: list[dict], path: Path) -> None:
    from .plots import _save, plt

    with_accuracy = all(r["accuracy"] is not None for r in rows)
    figure, axes = plt.subplots(figsize=(6, 4.5))
    for row in rows:
        y = row["accuracy"] if with_accuracy else row["params"] / 1e6
        axes.scatter(row["latency_b1_ms"], y, s=30 + (row["macs"] or 0) / 1e7)
        axes.annotate(Path(row["model"]).name, (row["latency_b1_ms"], y), textcoords="offset points", xytext=(5, 5),
                      fontsize=8)
    axes.set_xlabel(f"latency at batch 1 (ms, {rows[0]['threads']} threads)")
    axes.set_ylabel("accuracy" if with_accuracy else "parameters (millions)")
    axes.set_title(("Accuracy" if with_accuracy else "Size") + " against latency (marker size: multiply-adds)")
    axes.grid(alpha=0.3)
    _save(figure, path)
