"""Browser bundles (``--format web``): a folder any static web server can serve, that classifies photos and camera
frames on the visitor's device with onnxruntime-web (WebAssembly), offline, with mobiclass's own preprocessing.

The bundle is ``index.html`` and ``app.js`` (drop, choose or film; top classes and confidences), ``mobiclass.js``
(the preprocessing, reproduced from Pillow's, and ``classify()``), ``model.json`` (classes, preprocessing,
calibrated temperature), the ONNX model, and ``ort/`` (the runtime, copied from the npm package: no CDN). Every
path is relative. Where Chromium and Playwright are installed, the bundle is checked in its real runtime: every
verification photo is classified by the page itself in headless Chromium.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import sys
import threading
from pathlib import Path

import numpy as np

from ..files import atomic_write_text
from ..runtime import Classifier
from . import web_runtime

WEB_FILES = Path(__file__).with_name("web_files")
PAGE_FILES = ("index.html", "app.js", "mobiclass.js", "favicon.svg")
RUNTIME_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm", "LICENSE.txt")
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync")

README = """# {title}: in the browser ({precision})

Serve this folder with any static web server and open it, e.g.

```
python3 -m http.server --bind 127.0.0.1 8000     # then open http://127.0.0.1:8000/
```

Drop or choose photos, or use the camera: each is classified on the visitor's device by onnxruntime-web
{version} (WebAssembly, in `ort/`, MIT licence), nothing is uploaded, and nothing is loaded from elsewhere. Opened
as a file (`file://`), browsers refuse to load its modules: serve it.

For automation, the page defines `window.mobiclassClassify(urlOrImage, topK = 5)`: a Promise of
`[{{label, index, confidence}}, ...]`, best first. `mobiclass.js` exports the same `classify()` for your own pages.

The preprocessing is mobiclass's, step by step: the central square of {size}/{resize} of the shorter side,
resampled as Pillow does it ({interpolation}), mean and std in float32, and the calibrated temperature
({temperature:g}) before the softmax. Photos in PNG or other lossless formats give mobiclass's exact input;
large JPEGs, which mobiclass decodes at reduced scale, are approximated (see `model-card.json`).

| file | what |
|---|---|
| `index.html`, `app.js` | the page |
| `mobiclass.js` | preprocessing and `classify()` |
| `model.json` | classes, preprocessing, temperature, the model file's name |
| `{model}` | the model ({precision}) |
| `ort/` | onnxruntime-web {version}, WebAssembly build |
"""


def write_bundle(classifier: Classifier, folder: Path, model: Path, precision: str) -> list[str]:
    """Write the bundle for the ONNX file `model` into `folder` (replaced whole); every file of it."""
    runtime = web_runtime.runtime(log=lambda text: print(text, file=sys.stderr))
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "ort").mkdir(parents=True)
    for name in PAGE_FILES:
        shutil.copy(WEB_FILES / name, folder / name)
    for name in RUNTIME_FILES:
        shutil.copy(runtime / name, folder / "ort" / name)
    shutil.copy(model, folder / model.name)
    pre = classifier.preprocessing
    title = f"{classifier.architecture}, {len(classifier.classes)} classes"
    meta = {"title": f"mobiclass: {title}", "model": model.name, "classes": list(classifier.classes),
            "temperature": float(classifier.temperature), "precision": precision, "preprocessing": pre.to_dict()}
    atomic_write_text(folder / "model.json", json.dumps(meta, indent=1) + "\n")
    atomic_write_text(folder / "labels.txt", "\n".join(classifier.classes) + "\n")
    atomic_write_text(folder / "README.md", README.format(
        title=title, precision=precision, version=web_runtime.VERSION, size=pre.size, resize=pre.resize,
        interpolation=pre.interpolation, temperature=float(classifier.temperature), model=model.name))
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def chromium() -> str | None:
    """A Chromium for Playwright: ``$MOBICLASS_CHROMIUM``, else one on PATH."""
    return os.environ.get("MOBICLASS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def check_in_chromium(folder: Path, images: list[str]) -> dict | None:
    """Classify every one of `images` with the bundle in `folder`, by its own page in headless Chromium: the top
    class of each (-1 where the page could not), its confidence, and images per second. None where Chromium or
    Playwright is not installed."""
    executable = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if executable is None:
        return None
    with _Server(folder, images) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page()
            page.goto(f"{url}/index.html")
            page.wait_for_selector("body[data-ready=true]", timeout=60_000)
            answers = page.evaluate("""async (count) => {
                const started = performance.now(), top = [];
                for (let i = 0; i < count; i++) {
                  try { const [best] = await window.mobiclassClassify(`photos/${i}`, 1);
                        top.push([best.index, best.confidence]); }
                  catch (error) { top.push([-1, 0]); }
                }
                return {top, seconds: (performance.now() - started) / 1000};
            }""", len(images))
            version = browser.version
        finally:
            browser.close()
    top = np.array(answers["top"])
    return {"top1": top[:, 0].astype(int), "confidence": top[:, 1], "browser": f"Chromium {version}",
            "images_per_second": len(images) / max(answers["seconds"], 1e-9)}


class _Server:
    """A static server on a free loopback port for the bundle, with the photos under photos/N."""

    def __init__(self, folder: Path, images: list[str]):
        photos = [Path(p) for p in images]

        class Handler(http.server.SimpleHTTPRequestHandler):
            def translate_path(self, path: str) -> str:
                parts = path.split("?")[0].strip("/").split("/")
                if len(parts) == 2 and parts[0] == "photos" and parts[1].isdigit() and int(parts[1]) < len(photos):
                    return str(photos[int(parts[1])])
                return super().translate_path(path)

            def guess_type(self, path) -> str:
                return "text/javascript" if str(path).endswith((".js", ".mjs")) else super().guess_type(path)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler,
                                                                                          directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> str:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
