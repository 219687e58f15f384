"""A newcomer's first hour in the studio, in a real headless Chromium with a fake camera: create a project, upload
photos, capture bursts and a held recording with the camera left on, add a photo from a phone through the QR
code's page, train while the studio restarts under the open page, read one accuracy everywhere, export, download,
try it with an "unsure" threshold and the live camera, and every tab at a phone's 390 px."""
from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import httpx
from PIL import Image

from helpers import ARTIFACTS, BackgroundServer, chromium_or_skip, draw_shapes, free_port
from mobiclass.studio.server import build_studio

CAMERA_FLAGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
TOKEN = "journey-token-0123456789abcdef"
TABS = ("collect", "train", "evaluate", "deploy", "try")


def studio_at(home: Path, port: int) -> BackgroundServer:
    """The studio as `mobiclass studio --host 0.0.0.0` runs it (a token, a link for phones), on a fixed port."""
    url = f"http://127.0.0.1:{port}/"
    return BackgroundServer(build_studio(home, token=TOKEN, phone_url=url), port=port)


def widths(page, project: int) -> dict[str, int]:
    """How wide each tab's document is (a tab that scrolls sideways is wider than the viewport)."""
    found = {}
    for tab in ("projects", *TABS):
        page.goto(page.url.split("#")[0] + ("#/" if tab == "projects" else f"#/p/{project}/{tab}"))
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(400)  # the progress bar's transition (0.3 s)
        found[tab] = page.evaluate("() => document.documentElement.scrollWidth")
        page.screenshot(path=str(ARTIFACTS / f"studio-390-{tab}.png"), full_page=True)
    return found


def test_the_first_hour_in_chromium(tmp_path, monkeypatch):
    executable = chromium_or_skip()
    monkeypatch.setenv("MOBICLASS_TOOLCHAINS", str(tmp_path / "toolchains"))  # a new machine: none installed
    from playwright.sync_api import sync_playwright

    shapes = draw_shapes(tmp_path / "shapes", per_class=12)
    blend, snapshot = tmp_path / "circle-and-square.png", tmp_path / "from-the-phone.png"
    halves = [Image.open(shapes / name / f"{name}_002.png").convert("RGB") for name in ("circle", "square")]
    Image.blend(*halves, 0.5).save(blend)  # half a circle, half a square: no class should be sure of it
    Image.open(shapes / "square" / "square_000.png").rotate(45).save(snapshot)  # a photo the project has not seen
    ARTIFACTS.mkdir(exist_ok=True)
    home, port = tmp_path / "home", free_port()
    shots: dict[str, Path] = {}
    requested = []
    server = studio_at(home, port).__enter__()
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=[
                "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", *CAMERA_FLAGS])
            context = browser.new_context(viewport={"width": 1280, "height": 900}, permissions=["camera"],
                                          accept_downloads=True)
            page = context.new_page()
            page.on("request", lambda request: requested.append(request.url))

            def shot(name: str) -> None:
                shots[name] = ARTIFACTS / f"studio-{name}.png"
                page.screenshot(path=str(shots[name]), full_page=True)

            # --- the projects page, empty, then a project with classes and photos ------------------------------
            page.goto(f"{server.url}/#token={TOKEN}")
            empty_projects = page.locator("#project-list .empty").inner_text()
            page.fill("#new-project-name", "shapes")
            page.click("#new-project button")
            page.locator("#project-title", has_text="shapes").wait_for()
            project = int(page.url.split("/p/")[1].split("/")[0])
            no_class = page.locator("#no-class").is_visible() and not page.locator("#collector").is_visible()
            for name in ("circle", "square", "triangle"):
                page.fill("#new-class-name", name)
                page.click("#new-class button")
                page.locator("#current-class", has_text=name).wait_for()
                page.set_input_files("#file-input", sorted(str(p) for p in (shapes / name).iterdir()))
                page.locator("#upload-status", has_text=f"Added 12 photo(s) to {name}").wait_for(timeout=30_000)

            # --- the camera stays on: a burst over the limit, another burst, a held recording, then Stop --------
            page.click("#camera-toggle")
            page.locator("#camera-toggle", has_text="Stop camera").wait_for(timeout=20_000)
            page.fill("#burst-count", "100")
            page.locator("#burst-count").dispatch_event("change")
            limited = (page.input_value("#burst-count"), page.locator("#capture-status").inner_text())
            page.fill("#burst-count", "3")
            page.click("#capture")
            page.locator("#upload-status", has_text="Added 3 photo(s) to triangle").wait_for(timeout=30_000)
            on_after_burst = page.evaluate("() => !!document.querySelector('#camera').srcObject?.active")
            page.fill("#burst-count", "2")
            page.click("#capture")
            page.locator("#upload-status", has_text="Added 2 photo(s) to triangle").wait_for(timeout=30_000)
            page.locator("#hold").hover()
            page.mouse.down()
            page.wait_for_timeout(1500)
            page.mouse.up()
            page.locator("#capture-status", has_text="recorded").wait_for(timeout=30_000)
            held = int(page.locator("#capture-status").inner_text().split()[1])
            on_after_hold = page.evaluate("() => !!document.querySelector('#camera').srcObject?.active")
            button_after = page.locator("#camera-toggle").inner_text()
            shot("collect")
            page.click("#camera-toggle")
            stopped = (page.locator("#camera-toggle").inner_text(), page.locator("#camera").is_visible())

            # --- a phone adds a photo through the QR code's page (a second browser, no token but the link's) ----
            page.click("#phone summary")
            page.locator("#phone img.qr").wait_for()
            link = page.locator("#phone-link").get_attribute("href")
            phone = browser.new_context(viewport={"width": 390, "height": 800}, is_mobile=True).new_page()
            phone.on("request", lambda request: requested.append(request.url))
            phone.goto(link)
            phone.click("#classes button[data-class=square]")
            phone.locator("#classes button.chosen[data-class=square]").wait_for()
            phone.set_input_files("#shoot", [str(snapshot)])
            phone.locator("#status", has_text="photo(s) to square").wait_for(timeout=30_000)
            phone_said = phone.locator("#status").inner_text()
            phone_url = phone.url
            phone.screenshot(path=str(ARTIFACTS / "studio-390-capture.png"), full_page=True)
            square = {c["name"]: c["images"] for c in api.get(f"/api/projects/{project}").json()["classes"]}
            # Cleaning by hand: delete asks first; a move says what it did.
            page.click("#class-list li[data-class=square] button.link")
            page.locator("#current-class", has_text="square").wait_for()
            page.locator("#images li[data-image]").nth(12).wait_for()  # the phone's photo, the newest
            confirmations = []
            page.once("dialog", lambda dialog: (confirmations.append(dialog.message), dialog.accept()))
            page.locator("#images li[data-image]").nth(12).locator("button.danger").click()
            page.locator("#notice", has_text="Deleted the photo of square").wait_for()
            page.click("#class-list li[data-class=triangle] button.link")
            page.locator("#current-class", has_text="triangle").wait_for()
            page.locator("#images li[data-image]").first.locator("select").select_option("circle")
            page.locator("#notice", has_text="Moved the photo from triangle to circle").wait_for()
            cleaned = {c["name"]: c["images"] for c in api.get(f"/api/projects/{project}").json()["classes"]}

            # --- train, with the studio restarted under the open page --------------------------------------------
            page.click("a[data-tab=train]")
            page.locator("#model-cards .card[data-model=efficientnet_lite0]").wait_for()
            cards_source = page.locator("#cards-source").inner_text()
            v3_note = page.locator("#model-cards .card[data-model=mobilenet_v3_small] .note").inner_text()
            empty_jobs = page.locator("#job-list .empty").inner_text()
            page.select_option("#target", "k210")  # nothing of the catalogue fits a K210 at 224 px; the cards say why
            page.locator("#target-note", has_text="Its recipe: mobilenet_v2 at 128 px").wait_for()
            page.select_option("#image-size", "224")
            too_big = page.locator("#model-cards .card[data-model=efficientnet_lite0][data-fits=false]")
            too_big.wait_for()
            refusal = too_big.locator(".fit").inner_text()
            page.select_option("#target", "raspberry-pi")
            page.locator("#target-note", has_text="Its recipe: mobilenet_v2 at 224 px").wait_for()
            page.fill("#epochs", "5")  # at 224 px: long enough to restart the studio in the middle
            page.click("#train-start")
            page.locator("#job-panel[data-state]").wait_for(timeout=30_000)
            job = int(page.locator("#job-id").inner_text().lstrip("#"))
            polls, disagreements, queued_while_running, reconnecting, first_ready = 0, [], [], "", ""

            def poll() -> None:
                """The panel and the list as the page shows them at one moment (one read: separate reads could
                straddle an update and see the two halves of one change)."""
                nonlocal polls, first_ready
                panel, result, listed, stage = page.evaluate("""(job) => [
                    "#job-state", "#job-result", `#job-list li[data-job='${job}'] .job-state`, "#job-stage"
                ].map((selector) => document.querySelector(selector)?.innerText ?? null)""", job)
                if panel == "running" and result.startswith("First model ready"):
                    first_ready = result
                polls += 1
                if panel != listed:
                    disagreements.append((panel, listed))
                if panel == "running" and "queued" in stage:
                    queued_while_running.append(stage)

            deadline = time.monotonic() + 180
            while page.locator("#history tbody tr").count() == 0 and time.monotonic() < deadline:
                poll()
                page.wait_for_timeout(200)
            server.__exit__(None, None, None)  # the studio stops mid-training (its worker and job with it)
            deadline = time.monotonic() + 30
            while not reconnecting and time.monotonic() < deadline:
                page.wait_for_timeout(200)
                reconnecting = page.locator("#job-connection").inner_text()
            server = studio_at(home, port).__enter__()  # started again: the job resumes from its last epoch
            restarted = time.monotonic()
            deadline = restarted + 300
            finished_at = reconnected_at = None
            while time.monotonic() < deadline:
                poll()
                if reconnected_at is None and not page.locator("#job-connection").inner_text():
                    reconnected_at = time.monotonic()
                if finished_at is None and api.get(f"/api/jobs/{job}").json()["state"] in ("done", "failed"):
                    finished_at = time.monotonic()
                if page.locator("#job-panel").get_attribute("data-state") in ("done", "failed"):
                    break
                page.wait_for_timeout(200)
            shown_at = time.monotonic()
            record = api.get(f"/api/jobs/{job}").json()
            result = page.locator("#job-result").inner_text()
            kept_row = page.locator("#history tbody tr.kept td").all_inner_texts()
            rows = page.locator("#history tbody tr").count()
            curve_points = page.locator("#curves svg[data-chart=accuracy] circle.val").count()
            listed = page.locator(f"#job-list li[data-job='{job}']").inner_text()
            cancel_class = page.locator("#job-cancel").get_attribute("class")
            shot("train")

            # --- review: the data doctor's queue, one click a finding ------------------------------------------
            page.click("a[data-tab=collect]")
            page.click("#review-start")
            page.locator("#review[data-state=done]").wait_for(timeout=120_000)
            page.locator("#review-state", has_text="Checked").wait_for()
            checked = page.locator("#review-state").inner_text()
            jobs_now = api.get(f"/api/projects/{project}").json()["job_list"]
            review = api.get(f"/api/jobs/{max(j['id'] for j in jobs_now)}")
            findings = review.json()["metrics"]
            queued = page.locator("#review-body li[data-review]").count()
            page.locator("#review").screenshot(path=str(ARTIFACTS / "studio-review.png"))
            # The fake camera's frames look alike: keep one group as it is, delete a training copy in another.
            page.locator("#review-body li[data-review=leak]").first.locator("button", has_text="Keep them all").click()
            page.locator("#notice", has_text="Kept the photos: they will not be suspected again").wait_for()
            kept_one = page.locator("#review-body li[data-review]").count()
            number = page.locator("#review-body li[data-group]:has(button:has-text('Delete this copy'))").first \
                .get_attribute("data-group")
            group = page.locator(f"#review-body li[data-group='{number}']")
            copies = group.locator("figure").count()
            group.locator("button", has_text="Delete this copy").first.click()
            page.locator("#notice", has_text="Deleted the training copy").wait_for()
            after = page.locator("#review-body li[data-review]").count()
            fewer = group.locator("figure").count() if after == kept_one else 1  # a pair's last photo: it goes

            # --- label these next: photos without a class, the model's doubts first, one click each --------------
            loose = draw_shapes(tmp_path / "loose", per_class=2, seed=5)
            page.set_input_files("#unlabelled-input", sorted(str(p) for p in loose.glob("*/*.png")))
            page.locator("#pick-state", has_text="Added 6 photo(s) without a class (6 in all)").wait_for(timeout=30_000)
            page.click("#pick-start")
            page.locator("#to-label[data-state=done]").wait_for(timeout=60_000)
            pick_state = page.locator("#pick-state").inner_text()
            picked = page.locator("#pick-list li[data-pick]").count()
            first_pick = page.locator("#pick-list li[data-pick]").first
            guess = first_pick.locator(".caption").inner_text()
            buttons = first_pick.locator("button").all_inner_texts()
            page.locator("#to-label").screenshot(path=str(ARTIFACTS / "studio-picks.png"))
            first_pick.locator("button").first.click()
            page.locator("#notice", has_text=f"Filed the photo under {buttons[0]}").wait_for()
            picks_left = page.locator("#pick-list li[data-pick]").count()
            filed = {c["name"]: c["images"] for c in api.get(f"/api/projects/{project}").json()["classes"]}

            # --- evaluate: the same accuracy, and calibration in words ----------------------------------------
            page.click("a[data-tab=evaluate]")
            page.locator("#report-figures .figure").first.wait_for(timeout=30_000)
            figure = page.locator("#report-figures [data-figure=accuracy] strong").inner_text()
            photos = page.locator("#report-figures [data-figure='validation photos'] strong").inner_text()
            calibration = page.locator("#calibration-words").inner_text()
            ending = page.locator("#report-ending").inner_text()
            confusion = page.locator("#confusion tr").count()
            shot("evaluate")

            # --- deploy: the export survives a reload of the page that started it -----------------------------
            page.click("a[data-tab=deploy]")
            page.locator("#deploy-target-name", has_text="raspberry-pi").wait_for()
            page.click("#deploy-start")
            page.locator("#export-panel[data-state]").wait_for(timeout=30_000)
            page.reload()
            page.locator("#download:not([hidden])").wait_for(timeout=180_000)
            verdict = page.locator("#export-verdict").inner_text()
            pytorch_row = page.locator("#export-figures tr[data-format=pytorch] td").all_inner_texts()
            same_photos = page.locator("#export-photos").inner_text()
            with page.expect_download() as download_info:
                page.click("#download")
            bundle = download_info.value.path().read_bytes()
            shot("deploy")
            page.click("a[data-tab=train]")  # another board's first export asks before installing its toolchain
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
            jobs = api.get("/api/projects").json()["projects"][0]["jobs"]

            # --- try it: an answer, an "unsure" one under the threshold, Grad-CAM, the live camera and Stop ----
            page.click("a[data-tab=try]")
            page.set_input_files("#try-input", [str(shapes / "circle" / "circle_001.png")])
            page.locator("#predictions li strong").first.wait_for(timeout=60_000)
            predicted = page.locator("#predictions > li").first.inner_text()
            page.locator("#min-confidence").fill("95")
            page.set_input_files("#try-input", [str(blend)])
            page.locator("#predictions > li[data-unsure=true] strong.unsure").wait_for(timeout=60_000)
            unsure = page.locator("#predictions > li strong").first.inner_text()
            page.locator("#min-confidence").fill("50")
            page.check("#try-explain")
            page.set_input_files("#try-input", [str(shapes / "circle" / "circle_001.png")])
            page.locator("#predictions img.heatmap").wait_for(timeout=60_000)
            heatmap = page.locator("#predictions img.heatmap").get_attribute("src")[:22]
            shot("try")
            icons = page.evaluate("""() => Promise.all([document.querySelector("link[rel=icon]").href, "/favicon.ico"]
                .map(async (url) => (await fetch(url)).status))""")
            asked = len([url for url in requested if "/predict" in url])
            page.click("#live-toggle")
            page.locator("#live-toggle", has_text="Stop live").wait_for(timeout=20_000)
            deadline = time.monotonic() + 60  # twice a second when idle; a loaded machine answers slower
            while len([u for u in requested if "/predict" in u]) < asked + 3 and time.monotonic() < deadline:
                page.wait_for_timeout(250)
            live = len([url for url in requested if "/predict" in url]) - asked
            page.click("#live-toggle")
            page.wait_for_timeout(700)  # an answer on its way may still arrive; none is asked after
            after_stop = len([url for url in requested if "/predict" in url])
            page.wait_for_timeout(1200)
            live_stopped = (len([url for url in requested if "/predict" in url]) == after_stop,
                            page.locator("#live-toggle").inner_text(), page.locator("#live").is_visible())

            # --- a phone's width: no tab scrolls sideways -----------------------------------------------------
            narrow = browser.new_context(viewport={"width": 390, "height": 800}).new_page()
            narrow.goto(f"{server.url}/#token={TOKEN}")
            narrow.locator("#project-list .card").first.wait_for()
            page_widths = widths(narrow, project)
            browser.close()
    finally:
        api.close()
        server.__exit__(None, None, None)

    assert empty_projects.startswith("No projects yet.") and no_class
    assert limited == ("50", "50 frames at most per burst: hold to record for more (up to 200).")
    assert on_after_burst and on_after_hold and button_after == "Stop camera" and held >= 3, (held, button_after)
    assert stopped == ("Start camera", False)
    assert phone_url == f"{server.url}/capture" and phone_said == "Added 1 photo(s) to square.", (phone_url, phone_said)
    assert square == {"circle": 12, "square": 13, "triangle": 12 + 3 + 2 + held}, square
    assert confirmations == ["Delete this photo of square? It leaves the project (files elsewhere are untouched)."]
    assert cleaned == {"circle": 13, "square": 12, "triangle": 12 + 3 + 2 + held - 1}, cleaned
    assert "python" not in cards_source and cards_source.startswith("Expected accuracy: what our training benchmark")
    assert v3_note.endswith("the studio runs offline (MOBICLASS_OFFLINE)") and empty_jobs.startswith("No training yet")
    assert refusal.startswith("does not fit k210: its largest layer needs 1,505 kB of RAM at uint8"), refusal
    # The restart: "reconnecting" while the studio was down, then the finished job within 10 s of its end.
    assert reconnecting.startswith("Connection to the studio lost: reconnecting"), reconnecting
    assert reconnected_at is not None and reconnected_at - restarted < 10  # the backoff never waits more than 4 s
    assert record["state"] == "done" and finished_at is not None and shown_at - finished_at < 10, record["error"]
    assert record["progress"].get("resumed") and polls > 10 and not disagreements and not queued_while_running, \
        (disagreements, queued_while_running)
    # One accuracy per model: the result, the kept epoch, the jobs list, the report and the deploy table.
    accuracy = f"{100 * record['metrics']['val']['accuracy']:.1f} %"
    assert result.startswith(f"Done: val accuracy {accuracy} on {photos} photos"), result
    said = record["metrics"]["ending"]
    assert f"{said[0].upper()}{said[1:]}. Open the report" in result and ending.endswith(f"{said}."), (result, ending)
    assert kept_row[0].endswith("(kept)") and kept_row[5] == accuracy, kept_row
    assert first_ready.startswith("First model ready: val accuracy ") and first_ready.endswith(
        "still improving. Try it now"), first_ready
    assert listed.endswith(f"val accuracy {accuracy}") and figure == accuracy and pytorch_row[1] == accuracy, \
        (listed, figure, pytorch_row)
    assert same_photos == f"Every row: the same {photos} validation photos." and rows == curve_points, same_photos
    assert "danger" in cancel_class and "times in 10" in calibration or "with care" in calibration
    assert confusion == 4
    assert checked.startswith(f"Checked {sum(cleaned.values())} photos") and review.json()["kind"] == "doctor"
    assert queued == len(findings["label_issues"]) + len(findings["duplicates"]) + len(findings["others"])
    assert kept_one == queued - 1 and fewer == copies - 1, (queued, kept_one, copies, fewer, after)
    assert pick_state.startswith(f"Label these next (6 of 6 without a class): the ones the model of training job "
                                 f"#{job} is least sure of"), pick_state
    assert picked == 6 and picks_left == 5 and guess.startswith(f"looks like {buttons[0]} (")
    assert sorted(buttons) == ["circle", "square", "triangle"]  # the model's guess first, one click each
    assert sum(filed.values()) == sum(cleaned.values()) - (fewer < copies) + 1, (filed, cleaned)
    assert verdict.startswith("Verified. fp16 kept: fp16 loses"), verdict
    names = sorted(Path(n).name for n in zipfile.ZipFile(io.BytesIO(bundle)).namelist())
    assert names == ["README.md", "classify.py", "labels.txt", "model-card.json", "model.ncnn.bin", "model.ncnn.param"]
    assert dialogs and dialogs[0].startswith("exporting needs rknn-toolkit2 2.5.0: installing it into ") and \
        "(about 1.5 GB, about 40 seconds here)" in dialogs[0], dialogs
    assert jobs == {"done": 4}, jobs  # training, the check, the picks and the Raspberry Pi export; not the declined one
    assert predicted.split()[0] in ("circle", "square", "triangle") and " ms for the request" in predicted
    assert unsure.startswith("unsure: best guess ") and unsure.endswith("under the 95 % threshold"), unsure
    assert heatmap == "data:image/png;base64,"
    assert live >= 3 and live_stopped == (True, "Classify the camera live", False)
    assert all(width <= 390 for width in page_widths.values()), str(page_widths)
    assert icons == [200, 200]
    assert all(url.startswith((server.url, "blob:", "data:")) for url in requested), requested  # nothing leaves
    assert all(Image.open(path).size[0] == 1280 for path in shots.values())
