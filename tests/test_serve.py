"""The HTTP service over real HTTP (uvicorn on 127.0.0.1), its micro-batcher, and its web page in Chromium."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from helpers import ARTIFACTS, CAT_LABELS, BackgroundServer, chromium_or_skip
from mobiclass import load_classifier
from mobiclass.explain import GradCam
from mobiclass.serve import MicroBatcher, ServeSettings, create_app
from mobiclass.serve.explaining import Explainer

SETTINGS = ServeSettings(max_batch_size=16, max_wait_ms=20, max_upload_mb=2, max_images=4)
HALF_MB = 512 * 1024


@pytest.fixture(scope="module")
def onnx_lite0():
    from mobiclass import load_classifier

    return load_classifier("efficientnet_lite0", engine="onnxruntime")


@pytest.fixture(scope="module")
def server(onnx_lite0):
    explainer = Explainer(lambda: GradCam(load_classifier("efficientnet_lite0", engine="torch")))
    with BackgroundServer(create_app(onnx_lite0, SETTINGS, title="lite0-test", explainer=explainer)) as running:
        yield running


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


def upload(*paths: Path) -> list:
    return [("files", (path.name, path.read_bytes(), "image/jpeg")) for path in paths]


def test_predict_real_photos_gives_the_objects_predict_prints(client, photos, onnx_lite0):
    response = client.post("/v1/predict", files=upload(photos["chelsea"], photos["coffee"]))
    assert response.status_code == 200
    body = response.json()
    cat, coffee = body["results"]
    assert cat["path"] == "chelsea.jpg" and cat["label"] in CAT_LABELS and coffee["label"] == "espresso"
    assert body["model"] == onnx_lite0.name and body["latency_ms"] > 0
    local = onnx_lite0.predict([photos["chelsea"], photos["coffee"]])
    for served, expected in zip(body["results"], local):
        assert set(served) == set(expected) == {"path", "label", "index", "confidence", "top_k"}
        assert [t["label"] for t in served["top_k"]] == [t["label"] for t in expected["top_k"]]
        assert served["confidence"] == pytest.approx(expected["confidence"], abs=1e-4)


def test_raw_body_and_top_k(client, photos):
    response = client.post("/v1/predict?top_k=2", content=photos["coffee"].read_bytes(),
                           headers={"content-type": "image/jpeg"})
    assert response.status_code == 200
    [result] = response.json()["results"]
    assert result["path"] == "body" and result["label"] == "espresso" and len(result["top_k"]) == 2


def test_one_bad_image_among_good_ones_gets_its_own_error(client, photos):
    files = upload(photos["coffee"]) + [("files", ("notes.txt", b"not a picture", "text/plain"))]
    response = client.post("/v1/predict", files=files)
    assert response.status_code == 200
    good, bad = response.json()["results"]
    assert good["label"] == "espresso"
    assert bad == {"path": "notes.txt", "error": "not an image, or a format Pillow cannot read"}


@pytest.mark.parametrize("content, content_type, status, message", [
    (b"hello", "image/jpeg", 415, "not an image, or a format Pillow cannot read"),
    (b"{}", "application/json", 415, "unsupported content type 'application/json': send images as the "
                                     "multipart/form-data field 'files', or one image as the raw body"),
    (b"", "image/jpeg", 400, "no image in the request: send images as the multipart/form-data field 'files', "
                             "or one image as the raw body"),
])
def test_unusable_requests_get_json_errors(client, content, content_type, status, message):
    response = client.post("/v1/predict", content=content, headers={"content-type": content_type})
    assert response.status_code == status and response.json()["error"] == message


def test_truncated_image_is_unprocessable(client, photos):
    truncated = photos["coffee"].read_bytes()[:3000]
    response = client.post("/v1/predict", files=[("files", ("cut.jpg", truncated, "image/jpeg"))])
    assert response.status_code == 422
    assert response.json()["error"].startswith("truncated or corrupt image data")


def test_uploads_over_the_limits_are_refused_and_the_server_keeps_serving(client, photos):
    too_big = b"\xff" * (SETTINGS.max_upload_bytes + 1)
    response = client.post("/v1/predict", content=too_big, headers={"content-type": "image/jpeg"})
    assert response.status_code == 413 and response.json()["error"] == \
        "the request is over the upload limit of 2 MB"
    chunked = client.post("/v1/predict", content=iter([too_big[:HALF_MB], too_big[HALF_MB:]]),
                          headers={"content-type": "image/jpeg"})  # no Content-Length: counted while read
    assert chunked.status_code == 413
    five = upload(photos["coffee"]) * 5
    response = client.post("/v1/predict", files=five)
    assert response.status_code == 413 and response.json()["error"] == \
        "too many images in one request: the limit is 4"
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.post("/v1/predict", files=upload(photos["coffee"])).json()["results"][0]["label"] == "espresso"



def test_64_concurrent_requests_are_all_answered_and_batched(server, photos):
    expected = {"chelsea.jpg": CAT_LABELS, "coffee.jpg": {"espresso"}}
    images = [photos["chelsea"], photos["coffee"]] * 32

    def ask(path: Path) -> tuple[int, str, str]:
        response = httpx.post(f"{server.url}/v1/predict", files=upload(path), timeout=120)
        result = response.json()["results"][0]
        return response.status_code, result["path"], result["label"]

    before = _batch_count(server)
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(ask, images))
    assert [status for status, _, _ in answers] == [200] * 64
    assert all(label in expected[name] for _, name, label in answers)
    assert _batch_count(server) - before < 64  # some forward passes served several requests


def _batch_count(server) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith("mobiclass_batch_size_count")))


def test_model_health_metrics_and_docs(client, onnx_lite0):
    model = client.get("/v1/model").json()
    assert model["num_classes"] == 1000 and len(model["classes"]) == 1000 and model["classes"][967] == "espresso"
    assert model["engine"] == "onnxruntime" and model["preprocessing"]["size"] == 224
    assert model["limits"] == {"max_upload_bytes": 2 * 1024 * 1024, "max_images": 4, "max_pixels": 40_000_000,
                               "max_request_pixels": 160_000_000}
    assert model["title"] == "lite0-test"
    assert model["batching"] == {"max_batch_size": 16, "max_wait_ms": 20}
    client.get("/healthz")
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'mobiclass_requests_total{route="/healthz",status="200"}' in metrics.text
    assert "mobiclass_request_seconds_bucket" in metrics.text and "mobiclass_batch_size_bucket" in metrics.text
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "multipart/form-data" in schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]


def test_micro_batcher_groups_concurrent_images_up_to_the_limit():
    sizes = []

    def predict(batch):
        sizes.append(len(batch))
        time.sleep(0.01)
        return batch.reshape(len(batch), -1)[:, :2]

    batcher = MicroBatcher(predict, max_batch_size=4, max_wait_ms=50)
    futures = [batcher.submit(np.full((3, 1, 1), i, dtype=np.float32)) for i in range(10)]
    assert [f.result(timeout=10)[0] for f in futures] == list(range(10))  # each caller gets its own row
    batcher.close()
    assert sum(sizes) == 10 and max(sizes) == 4 and len(sizes) == 3


def test_micro_batcher_without_batching_and_with_a_failing_engine():
    sizes = []
    single = MicroBatcher(lambda batch: sizes.append(len(batch)) or batch, max_batch_size=1, max_wait_ms=50)
    futures = [single.submit(np.zeros((3, 1, 1), dtype=np.float32)) for _ in range(5)]
    [f.result(timeout=10) for f in futures]
    single.close()
    assert sizes == [1] * 5

    def broken(batch):
        raise RuntimeError("engine failed")

    failing = MicroBatcher(broken, max_batch_size=4, max_wait_ms=1)
    with pytest.raises(RuntimeError, match="engine failed"):
        failing.submit(np.zeros((3, 1, 1), dtype=np.float32)).result(timeout=10)
    failing.close()


def test_web_page_in_headless_chromium(server, photos, tmp_path):
    """At desktop and phone widths: results in upload order, guesses look unlike answers, a broken upload shows no
    broken-image icon, nothing scrolls sideways; the API documentation renders its operations."""
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    Image.new("RGB", (300, 300), (128, 128, 128)).save(tmp_path / "grey.png")  # no class fits: a low confidence
    (tmp_path / "broken.jpg").write_text("not a photo")
    uploads = [str(photos["coffee"]), str(photos["chelsea"]), str(tmp_path / "grey.png"), str(tmp_path / "broken.jpg")]
    ARTIFACTS.mkdir(exist_ok=True)
    seen, requested = {}, []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            for name, width in (("desktop", 1000), ("phone", 390)):
                page = browser.new_page(viewport={"width": width, "height": 800})
                page.on("request", lambda request: requested.append(request.url))
                page.goto(server.url)
                page.locator("#model-info", has_text="onnxruntime").wait_for()
                page.set_input_files("#file-input", uploads)
                for i in range(len(uploads)):  # (wait_for_function would evaluate a string: the page's CSP forbids)
                    page.locator(".result[data-state]").nth(i).wait_for(timeout=60_000)
                seen[name] = page.evaluate(PAGE_FACTS)
                page.screenshot(path=str(ARTIFACTS / f"serve-page-{name}.png"), full_page=True)
            # The Grad-CAM toggle: each classified photo turns into its heatmap, and back.
            page.check("#explain")
            page.locator(".result.explained").nth(2).wait_for(timeout=60_000)
            heatmaps = page.evaluate("() => [...document.querySelectorAll('.result.explained .thumbnail')]"
                                     ".map((img) => img.src.slice(0, 22))")
            page.screenshot(path=str(ARTIFACTS / "serve-page-explained.png"), full_page=True)
            page.uncheck("#explain")
            shown_after = page.locator(".result.explained").count()
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.goto(f"{server.url}/docs")
            page.locator(".opblock-summary-path").first.wait_for(timeout=30_000)
            operations = page.locator(".opblock-summary-path").all_inner_texts()
            page.screenshot(path=str(ARTIFACTS / "serve-docs.png"))
        finally:
            browser.close()
    for name, width in (("desktop", 1000), ("phone", 390)):
        facts = seen[name]
        assert facts["names"] == ["coffee.jpg", "chelsea.jpg", "grey.png", "broken.jpg"], name
        assert facts["states"] == ["done", "done", "done", "failed"], name
        assert facts["labels"][0] == "espresso" and facts["labels"][1] in CAT_LABELS, name
        assert facts["unsure"] == [False, True, True, False], name  # coffee 0.95; chelsea 0.39; grey near uniform
        assert facts["notes"][1].startswith("low confidence (3") and facts["notes"][0] == "", name
        assert facts["bars"] == [5, 5, 5, 0] and min(facts["barWidths"]) > 0, name
        assert facts["brokenIconShown"] is False and facts["noPreviewShown"] == [False, False, False, True], name
        assert facts["scrollWidth"] <= width, name
        assert facts["title"] == "lite0-test" and facts["classes"].startswith("1000 classes: tench, goldfish"), name
        assert facts["docsLink"] == "/docs" and facts["latency"].startswith("server "), name
    assert heatmaps == ["data:image/png;base64,"] * 3 and shown_after == 0
    assert {"/v1/predict", "/v1/explain", "/v1/model", "/healthz"} <= set(operations)
    assert all(url.startswith((server.url, "blob:", "data:")) for url in requested), requested  # no CDN
    assert Image.open(ARTIFACTS / "serve-page-desktop.png").size[0] == 1000
    assert Image.open(ARTIFACTS / "serve-page-phone.png").size[0] == 390


PAGE_FACTS = """() => {
  const cards = [...document.querySelectorAll('.result')];
  const visible = (element) => element.offsetParent !== null;
  return {
    names: cards.map((c) => c.querySelector('.file-name').textContent),
    states: cards.map((c) => c.dataset.state),
    labels: cards.map((c) => c.querySelector('.top-label').textContent),
    notes: cards.map((c) => c.querySelector('.note').textContent),
    unsure: cards.map((c) => c.classList.contains('unsure')),
    bars: cards.map((c) => c.querySelectorAll('.bars li').length),
    barWidths: [...document.querySelectorAll('.bar')].map((b) => b.getBoundingClientRect().width),
    brokenIconShown: cards.some((c) => { const img = c.querySelector('.thumbnail');
                                         return visible(img) && img.complete && img.naturalWidth === 0; }),
    noPreviewShown: cards.map((c) => visible(c.querySelector('.no-preview'))),
    scrollWidth: document.documentElement.scrollWidth,
    title: document.getElementById('model-title').textContent,
    classes: document.getElementById('model-classes').textContent,
    docsLink: document.querySelector('header nav a').getAttribute('href'),
    latency: cards[0].querySelector('.latency').textContent,
  };
}"""


def test_serve_command_with_two_workers(tmp_path, photos):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "mobiclass", "serve", "--model", "efficientnet_lite0",
                                "--port", str(port),
                                "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None and time.monotonic() < deadline, process.stdout and process.stdout.read()
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        answers = [httpx.post(f"{url}/v1/predict", files=upload(photos["coffee"]), timeout=60) for _ in range(4)]
        assert [a.json()["results"][0]["label"] for a in answers] == ["espresso"] * 4
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_command_reports_a_missing_run_folder(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mobiclass", "serve", "--model", str(tmp_path / "missing")],
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "500"})
    assert result.returncode == 2 and f"no such model or run folder: {tmp_path / 'missing'}" in result.stderr



def test_bad_query_parameters_answer_the_documented_error_object(client, photos):
    answer = client.post("/v1/predict?top_k=0", files=upload(photos["coffee"]))
    assert answer.status_code == 422 and answer.json() == {"error": "top_k must be at least 1", "code": "bad_request"}


def test_images_over_the_pixel_limit_are_refused_from_their_header(onnx_lite0, photos):
    app = create_app(onnx_lite0, ServeSettings(max_pixels=100_000))
    with BackgroundServer(app) as small, httpx.Client(base_url=small.url, timeout=60) as http:
        answer = http.post("/v1/predict", files=upload(photos["chelsea"]))
    assert answer.status_code == 422
    assert answer.json()["error"] == ("image too large: 451x300 pixels is over the limit of 100000 (a possible "
                                      "decompression bomb)")
    app = create_app(onnx_lite0, ServeSettings(max_request_pixels=300_000))  # two photos of 135,300 pixels pass
    with BackgroundServer(app) as budget, httpx.Client(base_url=budget.url, timeout=60) as http:
        assert http.post("/v1/predict", files=upload(*[photos["chelsea"]] * 2)).status_code == 200
        answer = http.post("/v1/predict", files=upload(*[photos["chelsea"]] * 3))
    assert answer.status_code == 413
    assert answer.json() == {"error": "the images of this request hold 405,900 pixels, over the limit of 300,000 per "
                                      "request"}


def test_concurrent_requests_decode_at_most_max_decodes_images_at_once(onnx_lite0, photos):
    """Memory stays bounded however many requests arrive: decoding is what takes it."""
    busy, peak, lock = [0], [0], threading.Lock()

    class Counting:
        def __getattr__(self, name):
            return getattr(onnx_lite0, name)

        def prepare(self, data, max_pixels):
            with lock:
                busy[0] += 1
                peak[0] = max(peak[0], busy[0])
            time.sleep(0.05)
            try:
                return onnx_lite0.prepare(data, max_pixels=max_pixels)
            finally:
                with lock:
                    busy[0] -= 1

    app = create_app(Counting(), ServeSettings(max_decodes=2, max_images=4))
    with BackgroundServer(app) as bounded:
        def send(_):
            with httpx.Client(base_url=bounded.url, timeout=60) as http:
                return http.post("/v1/predict", files=upload(*[photos["coffee"]] * 4)).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(send, range(8)))
    assert codes == [200] * 8 and peak[0] == 2
