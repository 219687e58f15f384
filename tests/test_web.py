"""The browser bundle as a visitor gets it: exported by the installed command, served by a plain static server on
127.0.0.1, opened in headless Chromium, where its answers on real photos must equal `mobiclass predict`'s on the
same model file; the page's file picker and live camera work, and nothing is fetched from anywhere else."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import chromium_or_skip, free_port, mobiclass
from mobiclass.datasets import fruits
from mobiclass.export import web_runtime
from mobiclass.export.web import CHROMIUM_ARGS
from mobiclass.files import package_resource

CAMERA_FLAGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """ImageNet MobileNetV1 0.25 (the weights shipped with the package) as a web bundle."""
    if web_runtime.installed() is None:
        pytest.skip("onnxruntime-web is not installed here (make setup fetches it: mobiclass toolchains --install web)")
    folder = tmp_path_factory.mktemp("web")
    weights = folder / "v1.safetensors"
    done = mobiclass("import-weights", package_resource("weights/mobilenet_v1_0.25_128_quant.tflite"), "--model",
                     "mobilenet_v1", "--out", weights, cwd=folder)
    assert done.returncode == 0, done.stderr
    done = mobiclass("export", "--model", weights, "--format", "web", "--calibration", fruits(), "--out",
                     folder / "export", cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    return folder / "export" / "web"


def test_the_bundle_holds_the_page_the_model_and_the_runtime_with_relative_paths(bundle):
    files = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file())
    assert files == ["README.md", "app.js", "favicon.svg", "index.html", "labels.txt", "mobiclass.js",
                     "model-card.json", "model.json", "model.onnx", "ort/LICENSE.txt", "ort/ort-wasm-simd-threaded.mjs",
                     "ort/ort-wasm-simd-threaded.wasm", "ort/ort.wasm.min.mjs"]
    meta = json.loads((bundle / "model.json").read_text())
    assert meta["model"] == "model.onnx" and len(meta["classes"]) == 1000 and meta["preprocessing"]["size"] == 128
    for page in ("index.html", "app.js", "mobiclass.js"):
        text = (bundle / page).read_text()
        assert "http://" not in text.replace("http://127.0.0.1", "") and "https://" not in text, page
    card = json.loads((bundle / "model-card.json").read_text())
    entry = card["formats"]["web"]
    assert entry["folder"] == "web" and entry["target"] == "browser" and entry["verified"]
    if entry["runtime"].startswith("onnxruntime-web"):  # Chromium was there: the page itself verified it
        assert entry["runtime"].startswith("onnxruntime-web 1.30.0 in Chromium ") and entry["top1_agreement"] >= 0.99
        assert entry["browser_images_per_second"] > 0 and entry["latency_source"].startswith("measured here")


def test_in_chromium_its_answers_equal_mobiclass_predicts_and_its_camera_works(bundle, photos, tmp_path):
    executable = chromium_or_skip()
    from PIL import Image
    from playwright.sync_api import sync_playwright

    site = tmp_path / "site"
    shutil.copytree(bundle, site)
    (site / "photos").mkdir()
    for name, path in photos.items():  # the real photos, losslessly: the exact pixels mobiclass reads
        Image.open(path).save(site / "photos" / f"{name}.png")
    for path in sorted((fruits() / "val" / "kiwi").iterdir())[:2]:  # small JPEGs: decoded at full size by both
        shutil.copy(path, site / "photos" / path.name)
    shown = sorted(p.name for p in (site / "photos").iterdir())
    expected = {Path(r["path"]).name: r for r in json.loads(mobiclass(
        "predict", *[site / "photos" / n for n in shown], "--model", site / "model.onnx", "--format", "json",
        "--top-k", "5", cwd=tmp_path).stdout)}
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)], cwd=site,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    requested: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline, "the static server did not start"
            time.sleep(0.1)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=[*CHROMIUM_ARGS, *CAMERA_FLAGS])
            try:
                context = browser.new_context(permissions=["camera"])
                page = context.new_page()
                page.on("request", lambda request: requested.append(request.url))
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector("body[data-ready=true]", timeout=60_000)
                assert page.inner_text("#status") == "Ready: 1000 classes, runs on this device (onnxruntime-web)."
                for name in shown:
                    got = page.evaluate("(url) => window.mobiclassClassify(url)", f"photos/{name}")
                    want = expected[name]["top_k"]
                    assert [g["label"] for g in got] == [w["label"] for w in want], name
                    assert max(abs(g["confidence"] - w["confidence"]) for g, w in zip(got, want)) < 1e-3, name
                page.set_input_files("#file", str(site / "photos" / "chelsea.png"))
                page.locator("#results li").first.wait_for()
                page.wait_for_function("document.querySelector('#status').textContent === 'chelsea.png'")
                assert page.locator("#results li").first.inner_text().startswith(expected["chelsea.png"]["label"])
                page.click("#camera-start")
                page.wait_for_function("document.querySelector('#status').textContent.startsWith('camera: ')",
                                       timeout=30_000)
                assert page.locator("#results li").count() == 5
                page.click("#camera-stop")
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert requested and all(url.startswith((f"http://127.0.0.1:{port}/", "blob:", "data:"))
                             for url in requested), requested
    assert f"http://127.0.0.1:{port}/favicon.svg" in requested  # its own icon: no 404 for /favicon.ico
