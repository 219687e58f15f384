"""The studio's whole journey in a real headless Chromium with a fake camera: create a project, upload photos
through the file chooser, capture frames, train with live progress, read the report, export, download, try it."""
from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

from PIL import Image

from helpers import ARTIFACTS, BackgroundServer, chromium_or_skip, draw_shapes
from mobiclass.studio.server import build_studio

CAMERA_FLAGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def test_the_whole_journey_in_chromium(tmp_path, monkeypatch):
    executable = chromium_or_skip()
    monkeypatch.setenv("MOBICLASS_TOOLCHAINS", str(tmp_path / "toolchains"))  # a new machine: none installed
    from playwright.sync_api import sync_playwright

    shapes = draw_shapes(tmp_path / "shapes", per_class=12)
    ARTIFACTS.mkdir(exist_ok=True)
    shots: dict[str, Path] = {}
    requested: list[str] = []
    with BackgroundServer(build_studio(tmp_path / "home")) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", *CAMERA_FLAGS])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, permissions=["camera"],
                                          accept_downloads=True)
            page = context.new_page()
            page.on("request", lambda request: requested.append(request.url))

            def shot(name: str) -> None:
                shots[name] = ARTIFACTS / f"studio-{name}.png"
                page.screenshot(path=str(shots[name]), full_page=True)

            page.goto(server.url)
            page.fill("#new-project-name", "shapes")
            page.click("#new-project button")
            page.locator("#project-title", has_text="shapes").wait_for()
            for name in ("circle", "square", "triangle"):
                page.fill("#new-class-name", name)
                page.click("#new-class button")
                page.locator("#current-class", has_text=name).wait_for()
                page.set_input_files("#file-input", sorted(str(p) for p in (shapes / name).iterdir()))
                page.locator("#upload-status", has_text=f"Added 12 photo(s) to {name}").wait_for(timeout=30_000)
            # Three frames of Chromium's fake camera, captured into the chosen class.
            page.click("#camera-start")
            page.locator("#capture:not([disabled])").wait_for(timeout=20_000)
            page.fill("#burst-count", "3")
            page.click("#capture")
            page.locator("#upload-status", has_text="Added 3 photo(s) to triangle").wait_for(timeout=30_000)
            page.locator("#images li").nth(14).wait_for()
            collected = page.locator("#class-list li").all_inner_texts()
            ready = page.locator("#check .ok").inner_text()
            shot("collect")

            page.click("a[data-tab=train]")
            page.locator("#model-cards .card[data-model=efficientnet_lite0]").wait_for()
            cards = page.locator("#model-cards .card").count()
            # The hardware first: on a K210 at 224 px nothing of the catalogue fits, and the cards say why.
            page.select_option("#target", "k210")
            page.locator("#target-note", has_text="Its recipe: mobilenet_v2 at 128 px").wait_for()
            page.select_option("#image-size", "224")
            too_big = page.locator("#model-cards .card[data-model=efficientnet_lite0][data-fits=false]")
            too_big.wait_for()
            refusal = too_big.locator(".fit").inner_text()
            page.select_option("#target", "raspberry-pi")
            page.locator("#target-note", has_text="Its recipe: mobilenet_v2 at 224 px").wait_for()
            page.reload()  # the project keeps its hardware
            page.locator("#model-cards .card[data-model=mobilenet_v2][data-fits=true]").wait_for()
            kept_target = page.locator("#target").input_value()
            page.select_option("#image-size", "96")
            page.fill("#epochs", "1")
            page.click("#train-start")
            page.locator("#job-state", has_text="running").wait_for(timeout=60_000)
            page.locator("#history tbody tr").first.wait_for(timeout=120_000)  # an epoch row, from the events
            page.locator("#job-panel[data-state=done]").wait_for(timeout=240_000)
            epochs = page.locator("#history tbody tr").count()
            summary = page.locator("#job-stage").inner_text()
            shot("train")

            page.click("a[data-tab=evaluate]")
            page.locator("#report-figures .figure").first.wait_for(timeout=30_000)
            per_class = page.locator("#per-class tr").count()
            confusion = page.locator("#confusion tr").count()
            shot("evaluate")

            page.click("a[data-tab=deploy]")
            page.locator("#deploy-target-name", has_text="raspberry-pi").wait_for()
            page.click("#deploy-start")
            page.locator("#download:not([hidden])").wait_for(timeout=180_000)
            verdict = page.locator("#export-verdict").inner_text()
            with page.expect_download() as download_info:
                page.click("#download")
            bundle = download_info.value.path().read_bytes()
            shot("deploy")
            # Another board's first export installs its toolchain: the page says what and asks; declined, nothing runs.
            page.click("a[data-tab=train]")
            page.select_option("#target", "rk3588")
            page.locator("#target-note", has_text="Runs rknn").wait_for()
            page.click("a[data-tab=deploy]")
            page.locator("#deploy-target-name", has_text="rk3588").wait_for()
            dialogs = []
            page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.click("#deploy-start")
            deadline = time.monotonic() + 10
            while not dialogs and time.monotonic() < deadline:
                page.wait_for_timeout(100)
            exports = page.evaluate("async () => (await (await fetch('/api/projects')).json()).projects[0].jobs")

            page.click("a[data-tab=try]")
            page.set_input_files("#try-input", [str(shapes / "circle" / "circle_000.png")])
            page.locator("#predictions li strong").first.wait_for(timeout=60_000)
            predicted = page.locator("#predictions > li").first.inner_text()
            page.check("#try-explain")  # the same photo again, now with where the model looked
            page.set_input_files("#try-input", [str(shapes / "circle" / "circle_000.png")])
            page.locator("#predictions img.heatmap").wait_for(timeout=60_000)
            heatmap = page.locator("#predictions img.heatmap").get_attribute("src")[:22]
            shot("try")
            asked = len([url for url in requested if url.endswith("/predict")])
            page.click("#live-start")  # the fake camera, classified twice a second
            # Twice a second when idle; a loaded machine answers slower, so wait for three answers, not a time.
            deadline = time.monotonic() + 60
            while len([u for u in requested if u.endswith("/predict")]) < asked + 3 and time.monotonic() < deadline:
                page.wait_for_timeout(250)
            live = len([url for url in requested if url.endswith("/predict")]) - asked

            phone = browser.new_page(viewport={"width": 390, "height": 800})
            phone.goto(page.url.replace("/try", "/collect"))
            phone.locator("#images li").first.wait_for()
            phone_width = phone.evaluate("() => document.documentElement.scrollWidth")
            phone.screenshot(path=str(ARTIFACTS / "studio-phone.png"), full_page=True)
        finally:
            browser.close()

    assert collected[0].startswith("circle (12)") and collected[2].startswith("triangle (15)"), collected
    assert ready == "Ready to train: 39 photos"
    assert cards == 7 and kept_target == "raspberry-pi"
    assert refusal.startswith("does not fit k210: its largest layer needs 1,505 kB of RAM at uint8"), refusal
    assert verdict.startswith("Verified. fp16 kept: fp16 loses"), verdict
    assert dialogs and dialogs[0].startswith("exporting needs rknn-toolkit2 2.5.0: installing it into ") and \
        "(about 1.5 GB, about 40 seconds here)" in dialogs[0], dialogs
    assert exports == {"done": 2}, exports  # the training and the Raspberry Pi export; the declined one never ran
    assert epochs == 2 and summary.startswith("Done: val accuracy"), (epochs, summary)
    assert per_class == 4 and confusion == 4
    names = sorted(Path(n).name for n in zipfile.ZipFile(io.BytesIO(bundle)).namelist())
    assert names == ["README.md", "classify.py", "labels.txt", "model-card.json", "model.ncnn.bin", "model.ncnn.param"]
    assert predicted.split()[0] in ("circle", "square", "triangle") and " ms for the request" in predicted
    assert heatmap == "data:image/png;base64,"
    assert live >= 3, live
    assert phone_width <= 390
    assert all(url.startswith((server.url, "blob:", "data:")) for url in requested), requested  # nothing leaves
    assert all(Image.open(path).size[0] == 1280 for path in shots.values())
