"""Evaluation metrics against hand-computed values, the report files, and the model comparison."""
import json
import math

import numpy as np
import pytest
from PIL import Image

from helpers import draw_shapes
from mobiclass import UsageError
from mobiclass.cli import main
from mobiclass.evaluate import calibration_bins, classification_report, evaluate
from mobiclass.evaluate.compare import compare

# Four predictions over classes a, b, c: three right, one "b" mistaken for "a" with confidence 0.5.
PROBABILITIES = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]])
LABELS = np.array([0, 1, 1, 2])


def test_metrics_match_hand_computed_values():
    report = classification_report(LABELS, PROBABILITIES, ["a", "b", "c"])
    assert report["accuracy"] == 0.75 and report["count"] == 4
    assert report["per_class"] == {
        "a": {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1},
        "b": {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2},
        "c": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}}
    assert report["macro_f1"] == pytest.approx(7 / 9)
    assert report["weighted_f1"] == pytest.approx((2 / 3 * 1 + 2 / 3 * 2 + 1 * 1) / 4)
    assert report["macro_precision"] == pytest.approx(2.5 / 3) and report["weighted_recall"] == 0.75
    assert report["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert report["confusion_matrix_normalized"] == [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
    assert report["log_loss"] == pytest.approx(-(math.log(0.7) + math.log(0.8) + math.log(0.4) + math.log(0.6)) / 4)
    assert report["top5_accuracy"] == 1.0


def test_top5_accuracy_with_many_classes():
    ranked = np.linspace(0.3, 0.05, 7)
    probabilities = np.tile(ranked / ranked.sum(), (2, 1))  # class 0 ranked first ... class 6 last
    assert classification_report(np.array([4, 5]), probabilities, list("abcdefg"))["top5_accuracy"] == 0.5


def test_calibration_bins_and_expected_calibration_error():
    calibration = calibration_bins(LABELS, PROBABILITIES, bins=5)
    occupied = [(b["count"], b["confidence"], b["accuracy"]) for b in calibration["bins"] if b["count"]]
    assert occupied == [(1, 0.5, 0.0), (2, pytest.approx(0.65), 1.0), (1, 0.8, 1.0)]
    assert calibration["ece"] == pytest.approx((0.5 + 2 * 0.35 + 0.2) / 4)


def test_evaluate_writes_metrics_predictions_plots_and_report(shapes_run, tmp_path):
    data, run = shapes_run
    test_set = draw_shapes(tmp_path / "test", per_class=5, seed=7)
    (test_set / "circle" / "broken.png").write_bytes(b"not a png")
    report = evaluate(run, test_set, out=tmp_path / "out")
    out = tmp_path / "out"
    expected = {"confusion_matrix.png", "metrics.json", "per_class_f1.png", "predictions.csv", "reliability.png",
                "report.html", "training_curves.png"} | ({"mistakes.png"} if report["mistakes"] else set())
    assert {p.name for p in out.iterdir()} == expected
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "top5_accuracy", "macro_f1", "weighted_f1", "per_class", "confusion_matrix",
            "classes"} <= set(metrics)
    assert metrics["classes"] == ["circle", "square", "triangle"] and metrics["count"] == 15
    assert sum(map(sum, metrics["confusion_matrix"])) == 15
    assert [b["path"].rsplit("/", 1)[-1] for b in metrics["bad_files"]] == ["broken.png"]
    lines = (out / "predictions.csv").read_text().splitlines()
    assert lines[0] == "path,true,predicted,confidence" and len(lines) == 16
    html = (out / "report.html").read_text()
    for png in metrics["plots"].values():
        Image.open(out / png).verify()  # real PNG files
        assert f'data-file="{png}"' in html
    assert "Per class" in html and "Most confidently wrong" in html and "<td>circle</td>" in html
    assert "<title>Evaluation of run on test (all)</title>" in html  # the run's name, not absolute paths
    assert "<h2>Training configuration</h2>" in html and "<td>epochs</td><td>2</td>" in html
    assert "<h2>Training data</h2>" in html and "<th>class</th><th>train</th><th>val</th>" in html
    assert "<td>total</td><td>39</td><td>9</td>" in html  # 16 shapes per class, 3 to validation


def test_plot_legends_cover_no_data_and_curves_stay_apart(monkeypatch, tmp_path):
    """Legends sit below the axes (not on the weakest bar or the first bin); equal curves are drawn differently."""
    from mobiclass.evaluate import plots

    figures = {}
    monkeypatch.setattr(plots, "save_figure", lambda figure, path, dpi=110: figures.setdefault(path.name, figure))
    report = classification_report(np.array([0, 0, 1, 2]), np.array([[.9, .05, .05], [.4, .5, .1], [.2, .7, .1],
                                                                     [.1, .1, .8]]), ["a", "b", "c"])
    plots.per_class_f1_plot(report, tmp_path / "f1.png")
    plots.reliability_plot(calibration_bins(np.array([0, 1]), np.array([[.05, .95], [.9, .1]])), tmp_path / "r.png")
    rows = [{"epoch": e, "train_loss": 1, "val_loss": 1, "train_accuracy": .5, "val_accuracy": .9, "val_macro_f1": .9,
             "lr": .1} for e in range(3)]
    plots.training_curves_plot(rows, tmp_path / "curves.png")
    for name, figure in figures.items():
        figure.canvas.draw()
        for axes in figure.axes:
            legend = axes.get_legend()
            if legend is not None:
                top = legend.get_window_extent().y1
                assert top <= axes.get_window_extent().y0, name
                assert top <= axes.xaxis.label.get_window_extent().y0, name  # nor on the axis label
    accuracy, macro_f1 = figures["curves.png"].axes[1].lines[1:]
    assert (accuracy.get_linestyle(), accuracy.get_marker()) != (macro_f1.get_linestyle(), macro_f1.get_marker())


def test_evaluate_refuses_classes_the_model_does_not_know(shapes_run, tmp_path):
    _, run = shapes_run
    draw_shapes(tmp_path / "other", per_class=2, classes=("circle", "hexagon", "star"))
    with pytest.raises(UsageError, match="has classes the model does not know: hexagon, star"):
        evaluate(run, tmp_path / "other")


def test_evaluate_cli_table(shapes_run, capsys):
    data, run = shapes_run
    assert main(["evaluate", str(data), "--model", str(run)]) == 0
    out = capsys.readouterr().out
    assert "macro avg" in out and "weighted avg" in out and f"report: {run / 'evaluation' / 'report.html'}" in out


def test_compare_one_row_per_model(shapes_run, tmp_path):
    data, run = shapes_run
    rows = compare(["efficientnet_lite0", run], data=data, out=tmp_path / "cmp",
                   runs=2)
    assert [r["model"] for r in rows] == ["efficientnet_lite0", str(run)]
    pretrained, trained = rows
    # The ImageNet model does not know the shapes: a short reason, not the 1000-class error message, per row.
    assert pretrained["params"] == 4_652_008 and pretrained["accuracy"] is None
    assert pretrained["note"] == "its classes are not the data's"
    assert trained["params"] == 4_652_008 - 1000 * 1281 + 3 * 1281
    assert trained["accuracy"] == evaluate(run, data, out=tmp_path / "eval")["accuracy"] and trained["note"] is None
    assert trained["resolution"] == 64 and trained["macs"] < pretrained["macs"]
    for row in rows:
        assert row["latency_b1_ms"] > 0 and row["throughput_b32"] > 0 and row["size_mb"] > 10
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir()) == ["compare.csv", "compare.json", "compare.png",
                                                                   "evaluations"]
    assert len((tmp_path / "cmp" / "compare.csv").read_text().splitlines()) == 3
    Image.open(tmp_path / "cmp" / "compare.png").verify()


def test_compare_measures_a_model_whose_weights_are_not_here(tmp_path, capsys):
    """Offline, MobileNetV3-Small has no pretrained weights: it is still measured, with untrained weights."""
    [row] = compare(["mobilenet_v3_small"], out=tmp_path / "cmp", runs=2)
    assert (row["params"], row["macs"], row["accuracy"]) == (2_542_856, 56_510_400, None)
    assert row["note"] == "no pretrained weights here" and row["latency_b1_ms"] > 0
    assert main(["compare", "--model", "mobilenet_v3_small", "--runs", "2", "--out", str(tmp_path / "cli")]) == 0
    assert "n/a: no pretrained weights here" in capsys.readouterr().out
