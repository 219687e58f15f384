"""Calibrated confidence: the temperature fit, its round trip through run folders and exported files, the report,
and answering "unsure" under a minimum confidence."""
import json

import numpy as np
import onnx
from safetensors import safe_open

from mobiclass import load_classifier
from mobiclass.cli import main
from mobiclass.evaluate import evaluate, fit_temperature, summary_metrics
from mobiclass.export import export
from mobiclass.runtime.classifier import softmax


def synthetic(scale: float, n: int = 3000, classes: int = 5, seed: int = 0):
    """Labels drawn from softmax(z); a model that answers scale * z is over- (scale > 1) or under-confident."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0, 2, (n, classes))
    labels = np.array([rng.choice(classes, p=p) for p in softmax(true_logits)])
    return scale * true_logits, labels


def test_temperature_undoes_over_and_under_confidence():
    for scale in (4.0, 0.25):
        logits, labels = synthetic(scale)
        temperature = fit_temperature(logits, labels)
        assert abs(temperature - scale) / scale < 0.1  # it recovers the distortion
        before = summary_metrics(labels, softmax(logits))["loss"]
        after = summary_metrics(labels, softmax(logits, temperature))["loss"]
        assert after < before - 0.05
        assert (softmax(logits, temperature).argmax(1) == logits.argmax(1)).all()  # no answer changes


def test_a_validation_split_without_mistakes_never_sharpens_the_model():
    logits, labels = synthetic(1.0, n=40)
    right = logits.argmax(1)  # every answer right: the log loss would fall without end as T shrinks
    assert fit_temperature(logits, right) >= 1.0  # sharpening is still fitted when there are mistakes (above)


def test_trained_runs_carry_their_temperature_everywhere(shapes_run, tmp_path, photos):
    data, run = shapes_run
    manifest = json.loads((run / "model.json").read_text())
    calibration = manifest["calibration"]
    temperature = calibration["temperature"]
    assert temperature != 1.0 and manifest["temperature"] == temperature
    assert calibration["fitted_on"] == "val (9 images)"
    assert calibration["log_loss_after"] <= calibration["log_loss_before"] + 1e-9
    assert json.loads((run / "metrics.json").read_text())["calibration"] == calibration
    with safe_open(str(run / "model.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["mobiclass"])["temperature"] == temperature
    torch_classifier = load_classifier(run, engine="torch")
    images = sorted((data / "circle").glob("*.png"))[:3]
    x = np.stack([torch_classifier.prepare(p) for p in images])
    expected = softmax(torch_classifier.engine.run(x), temperature)
    assert np.allclose(torch_classifier.predict_arrays(x), expected, atol=1e-6)
    assert np.allclose(load_classifier(run).predict_arrays(x), expected, atol=1e-4)  # the default (ONNX) engine
    export(run, out=tmp_path)
    exported = onnx.load(str(tmp_path / "model.onnx"))
    assert json.loads({p.key: p.value for p in exported.metadata_props}["mobiclass"])["temperature"] == temperature
    assert np.allclose(load_classifier(tmp_path / "model.onnx").predict_arrays(x), expected, atol=1e-4)
    report = evaluate(run, data, out=tmp_path / "eval")
    assert report["temperature"] == temperature and "calibration_without_temperature" in report
    html = (tmp_path / "eval" / "report.html").read_text()
    assert "<th>temperature</th><td>" in html and "<th>ECE without the temperature</th>" in html


def test_min_confidence_answers_unsure(capsys, photos):
    assert main(["predict", str(photos["chelsea"]), str(photos["coffee"]), "--engine", "torch", "--format", "json",
                 "--min-confidence", "0.5"]) == 0
    cat, coffee = json.loads(capsys.readouterr().out)
    assert (cat["label"], cat["index"], cat["unsure"]) == ("unsure", None, True)  # tiger cat at 0.38
    assert cat["confidence"] < 0.5 and cat["top_k"][0]["label"] == "tiger cat"
    assert coffee["label"] == "espresso" and "unsure" not in coffee
    assert main(["predict", str(photos["coffee"]), "--min-confidence", "1.5"]) == 2
    assert "the minimum confidence must be between 0 and 1, got 1.5" in capsys.readouterr().err
