"""Grad-CAM explanations: the heatmap's peak lies on the object of the explained class in real photos, and
predict, evaluate and the service hand it to people."""
from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys

import httpx
import pytest
from helpers import CAT_LABELS, BackgroundServer
from PIL import Image

from mobiclass import UsageError, load_classifier
from mobiclass.evaluate import evaluate
from mobiclass.explain import GradCam
from mobiclass.serve import create_app
from mobiclass.serve.explaining import Explainer

QUADRANT = 224


@pytest.fixture(scope="module")
def cam():
    return GradCam(load_classifier("mobilenet_v2", engine="torch"))  # the ImageNet model shipped with the package


@pytest.fixture(scope="module")
def four_photos(photos):
    """chelsea, coffee, rocket and astronaut side by side in a 2 x 2 grid, one quadrant each."""
    canvas = Image.new("RGB", (2 * QUADRANT, 2 * QUADRANT))
    for i, name in enumerate(("chelsea", "coffee", "rocket", "astronaut")):
        photo = Image.open(photos[name]).convert("RGB").resize((QUADRANT, QUADRANT))
        canvas.paste(photo, ((i % 2) * QUADRANT, (i // 2) * QUADRANT))
    return canvas


def quadrant(peak) -> int:
    x, y = peak
    return (y // QUADRANT) * 2 + x // QUADRANT


def test_the_peak_lies_on_the_cats_face(cam, photos):
    chelsea = Image.open(photos["chelsea"])
    [explanation] = cam.explain([chelsea])
    x, y = explanation.peak
    assert cam.classes[explanation.index] in CAT_LABELS
    assert 120 <= x <= 340 and 60 <= y <= 280, explanation.peak  # between the eyes and the nose, not the background
    assert explanation.heatmap.shape == (224, 224) and explanation.heatmap.max() == 1.0
    assert explanation.box == (94.25, 18.75, 356.75, 281.25)  # the centre crop the model saw, in chelsea's pixels
    assert explanation.overlay(chelsea).size == (262, 262)


@pytest.mark.parametrize("label, where", [("Egyptian cat", 0), ("cup", 1), ("space shuttle", 2)])
def test_the_explained_class_moves_the_heatmap_to_its_object(cam, four_photos, label, where):
    [explanation] = cam.explain([four_photos], [cam.classes.index(label)])
    assert quadrant(explanation.peak) == where, explanation.peak


def test_explanations_need_a_pytorch_model(tmp_path):
    onnx = load_classifier("mobilenet_v2", engine="onnxruntime")
    with pytest.raises(UsageError, match="explanations need the PyTorch model"):
        GradCam(onnx)


def test_predict_explain_writes_one_heatmap_per_photo(photos, tmp_path):
    out = tmp_path / "why"
    done = subprocess.run([sys.executable, "-m", "mobiclass", "predict", str(photos["chelsea"]), str(photos["coffee"]),
                           "--model", "mobilenet_v2", "--explain", str(out), "--format", "json"],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    cat, coffee = json.loads(done.stdout)
    assert sorted(p.name for p in out.iterdir()) == ["chelsea.gradcam.png", "coffee.gradcam.png"]
    assert cat["explanation"] == str(out / "chelsea.gradcam.png") and coffee["label"] == "espresso"
    assert 120 <= cat["peak"][0] <= 340 and 60 <= cat["peak"][1] <= 280
    assert Image.open(out / "coffee.gradcam.png").size == (350, 350)  # the crop of 224/256 of coffee's 400 px height


def test_predict_explain_refuses_a_file_as_its_folder(photos, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    done = subprocess.run([sys.executable, "-m", "mobiclass", "predict", str(photos["chelsea"]), "--explain",
                           str(target)], capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
    assert done.returncode == 2
    assert f"error: --explain {target} is a file; give a folder for the heatmaps" in done.stderr


def test_predict_explain_refuses_an_exported_file(photos, tmp_path):
    exported = tmp_path / "model.onnx"
    exported.write_bytes(b"not really onnx")
    done = subprocess.run([sys.executable, "-m", "mobiclass", "predict", str(photos["chelsea"]), "--model",
                           str(exported), "--explain", str(tmp_path / "out")],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
    assert done.returncode == 2
    assert (f"error: --explain needs the PyTorch model, and {exported} is an exported file: give its run folder or a "
            f"model name") in done.stderr
    assert not (tmp_path / "out").exists()


def test_evaluation_draws_where_the_model_looked_on_each_confident_mistake(photos, tmp_path):
    data = tmp_path / "data"
    for folder, photo in (("Egyptian cat", "coffee"), ("espresso", "chelsea")):  # both deliberately mislabelled
        (data / folder).mkdir(parents=True)
        (data / folder / f"{photo}.jpg").write_bytes(photos[photo].read_bytes())
    report = evaluate("mobilenet_v2", data, tmp_path / "evaluation")
    assert [m["predicted"] for m in report["mistakes"]] == ["espresso", "Egyptian cat"]
    assert all(len(m["peak"]) == 2 for m in report["mistakes"])
    assert report["plots"]["Most confidently wrong"] == "mistakes.png"
    cat = next(m for m in report["mistakes"] if m["predicted"] == "Egyptian cat")
    assert 120 <= cat["peak"][0] <= 340 and 60 <= cat["peak"][1] <= 280


@pytest.fixture(scope="module")
def explaining_server():
    served = load_classifier("mobilenet_v2", engine="onnxruntime")
    explainer = Explainer(lambda: GradCam(load_classifier("mobilenet_v2", engine="torch")))
    with BackgroundServer(create_app(served, explainer=explainer)) as running:
        yield running


def test_the_service_explains_uploads(explaining_server, photos):
    files = [("files", ("chelsea.jpg", photos["chelsea"].read_bytes(), "image/jpeg")),
             ("files", ("broken.jpg", b"not a photo", "image/jpeg"))]
    with httpx.Client(base_url=explaining_server.url, timeout=60) as client:
        assert client.get("/v1/model").json()["explain"] is True
        body = client.post("/v1/explain", files=files).json()
        cat, broken = body["results"]
        assert cat["label"] in CAT_LABELS and set(cat) == {"path", "label", "index", "peak", "heatmap"}
        assert 120 <= cat["peak"][0] <= 340 and 60 <= cat["peak"][1] <= 280
        png = base64.b64decode(cat["heatmap"].removeprefix("data:image/png;base64,"))
        assert Image.open(io.BytesIO(png)).size == (262, 262)
        assert broken == {"path": "broken.jpg", "error": "not an image, or a format Pillow cannot read"}
        chosen = client.post("/v1/explain", params={"label": "espresso"}, files=files[:1]).json()["results"][0]
        assert chosen["label"] == "espresso" and chosen["index"] == 967
        unknown = client.post("/v1/explain", params={"label": "unicorn"}, files=files[:1])
        assert unknown.status_code == 422 and unknown.json()["error"].startswith("unknown class 'unicorn'")
        five = client.post("/v1/explain", files=files[:1] * 5)
        assert five.status_code == 413 and five.json()["error"] == "too many images in one request: the limit is 4"


def test_a_service_of_an_exported_file_says_it_cannot_explain(photos):
    with BackgroundServer(create_app(load_classifier("mobilenet_v2", engine="onnxruntime"))) as running, \
            httpx.Client(base_url=running.url, timeout=60) as client:
        assert client.get("/v1/model").json()["explain"] is False
        refused = client.post("/v1/explain", content=photos["chelsea"].read_bytes(),
                              headers={"content-type": "image/jpeg"})
        assert refused.status_code == 409
        assert refused.json()["error"] == ("explanations need the PyTorch model: serve a run folder or a model name, "
                                           "not an exported file")
