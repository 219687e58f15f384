"""The evaluation plots, drawn with matplotlib (Agg backend: no display needed) into PNG files."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..data import load_image  # noqa: E402
from ..errors import ImageError  # noqa: E402
from ..files import atomic_path  # noqa: E402


def save_figure(figure, path: Path, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG (atomically) and close it."""
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")  # legends outside the axes stay in
    plt.close(figure)
    return path


CURVE_STYLES = [("-", "o", 8), ("--", "s", 5), (":", "^", 4)]


def _legend_below(axes, **options) -> None:
    """The legend under the axes and their x label, where it can cover no bar, bin, line or text."""
    from matplotlib.transforms import offset_copy

    below_label = offset_copy(axes.transAxes, fig=axes.figure, y=-38, units="points")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=below_label, ncols=3, frameon=False,
                **options)


MAX_FIGURE_INCHES = 24  # a 1000-class ImageNet model would otherwise ask for a 50,000-pixel-wide image


def confusion_matrix_plot(report: dict, path: Path) -> Path:
    """Row-normalised confusion matrix with the counts written in the cells (for up to 30 classes), over the
    classes that occur as true or predicted (an ImageNet model scored on a few of its classes shows those)."""
    counts = np.array(report["confusion_matrix"])
    shown = np.flatnonzero(counts.sum(axis=0) + counts.sum(axis=1))
    classes = [report["classes"][i] for i in shown]
    counts = counts[np.ix_(shown, shown)]
    normalized = np.array(report["confusion_matrix_normalized"])[np.ix_(shown, shown)]
    size = min(MAX_FIGURE_INCHES, max(4.0, 0.45 * len(classes) + 2))
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if len(classes) <= 30:
        for i in range(len(classes)):
            for j in range(len(classes)):
                if counts[i, j]:
                    axes.text(j, i, str(counts[i, j]), ha="center", va="center",
                              color="white" if normalized[i, j] > 0.5 else "black", fontsize=8)
    figure.colorbar(image, ax=axes, fraction=0.046, label="fraction of the true class")
    axes.set_title(f"Confusion matrix (accuracy {report['accuracy']:.3f})")
    return save_figure(figure, path)


def per_class_f1_plot(report: dict, path: Path) -> Path:
    names = list(report["per_class"])
    scores = [report["per_class"][n]["f1"] for n in names]
    figure, axes = plt.subplots(figsize=(7, min(MAX_FIGURE_INCHES * 4, max(2.5, 0.3 * len(names) + 1))))
    axes.barh(names, scores, color="#4C72B0")
    axes.axvline(report["macro_f1"], color="#C44E52", linestyle="--", label=f"macro F1 {report['macro_f1']:.3f}")
    axes.set_xlim(0, 1)
    axes.invert_yaxis()
    axes.set_xlabel("F1")
    _legend_below(axes)
    axes.set_title("Per-class F1")
    return save_figure(figure, path)


def training_curves_plot(rows: list[dict], path: Path) -> Path | None:
    """Loss, accuracy and learning rate per epoch from a run's history; None when there is none."""
    if not rows:
        return None
    epochs = [int(r["epoch"]) for r in rows]
    figure, (loss, accuracy, lr) = plt.subplots(1, 3, figsize=(12, 3.4))
    for axes, keys, title in ((loss, ("train_loss", "val_loss"), "loss"),
                              (accuracy, ("train_accuracy", "val_accuracy", "val_macro_f1"), "accuracy"),
                              (lr, ("lr",), "learning rate")):
        for key, (style, marker, size) in zip(keys, CURVE_STYLES):  # curves that coincide stay visible
            axes.plot(epochs, [float(r[key]) for r in rows], linestyle=style, marker=marker, markersize=size,
                      label=key.replace("_", " "))
        axes.set_xlabel("epoch (0: head on cached features)")
        axes.set_title(title)
        _legend_below(axes, fontsize=8)
    return save_figure(figure, path)


def mistakes_plot(mistakes: list[dict], path: Path, overlays: list | None = None, columns: int = 4) -> Path | None:
    """A grid of the most confidently wrong images with their true and predicted class; `overlays` (one image or
    None per mistake) replace the photos with their Grad-CAM for the predicted class."""
    if not mistakes:
        return None
    rows = (len(mistakes) + columns - 1) // columns
    figure, grid = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    for axes, mistake, overlay in zip(grid.flat, mistakes, overlays or [None] * len(mistakes)):
        try:
            image = overlay or load_image(mistake["path"], min_size=192)
            image.thumbnail((192, 192))
            axes.imshow(image)
        except ImageError:
            pass
        axes.set_title(f"true: {mistake['true']}\npredicted: {mistake['predicted']} ({mistake['confidence']:.2f})",
                       fontsize=9, color="#C44E52")
    figure.suptitle("Most confidently wrong" + (" (red: where the model saw the predicted class)" if overlays else ""))
    return save_figure(figure, path, dpi=72)


def reliability_plot(calibration: dict, path: Path) -> Path:
    """Accuracy against confidence per bin: a calibrated model follows the diagonal."""
    bins = [b for b in calibration["bins"] if b["count"]]
    figure, axes = plt.subplots(figsize=(4.8, 4.4))
    axes.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    axes.bar([(b["low"] + b["high"]) / 2 for b in bins], [b["accuracy"] for b in bins],
             width=[b["high"] - b["low"] for b in bins], edgecolor="black", alpha=0.7, label="accuracy")
    axes.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", color="#C44E52",
              label="mean confidence")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence of the top class")
    axes.set_ylabel("accuracy")
    axes.set_title(f"Reliability (ECE {calibration['ece']:.3f})")
    _legend_below(axes, fontsize=8)
    return save_figure(figure, path)
