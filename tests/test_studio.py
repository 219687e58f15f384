"""The studio's REST API over real HTTP: projects, photos, zips, jobs with live events, cancel, restart, export,
prediction, and its safety bounds."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from PIL import Image

from helpers import BackgroundServer, alive, descendants, draw_shapes, free_port, process_children
from mobiclass.errors import UsageError
from mobiclass.studio.jobs import export_options
from mobiclass.studio.schemas import ExportIn
from mobiclass.studio.server import build_studio, network_url

# A short real training run (about 20 s here).
QUICK_TRAIN = {"model": "efficientnet_lite0", "image_size": 64, "head_epochs": 20, "feature_views": 1, "epochs": 2,
               "unfreeze": "2", "batch_size": 16}


def png(colour=(200, 30, 30), size=(48, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def files_of(folder: Path) -> list:
    return [("files", (p.name, p.read_bytes(), "image/png")) for p in sorted(folder.iterdir())]


def client_for(url: str, timeout: float = 60) -> httpx.Client:
    """A program's client: it says so with the X-Mobiclass header, as the README tells scripts to."""
    return httpx.Client(base_url=url, timeout=timeout, headers={"X-Mobiclass": "1"})


def wait_for(client: httpx.Client, job: int, states=("done", "failed", "cancelled"), timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.get(f"/api/jobs/{job}").json()
        if answer["state"] in states:
            return answer
        time.sleep(0.3)
    raise AssertionError(f"job {job} did not reach {states}: {answer}")


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    home = tmp_path_factory.mktemp("studio")
    with BackgroundServer(build_studio(home, max_images=20, max_upload_mb=2, max_zip_members=50,
                                       max_zip_mb=1)) as running:
        running.home = home
        yield running


@pytest.fixture
def client(studio):
    with client_for(studio.url) as http:
        yield http


@pytest.fixture(scope="module")
def trained(studio, tmp_path_factory):
    """A shapes project trained once (circle, square, triangle: 16 photos each)."""
    shapes = draw_shapes(tmp_path_factory.mktemp("shapes"))
    with client_for(studio.url) as client:
        project = client.post("/api/projects", json={"name": "shapes"}).json()
        for name in ("circle", "square", "triangle"):
            assert client.post(f"/api/projects/{project['id']}/images", files=files_of(shapes / name),
                               data={"label": name}).status_code == 201
        job = client.post(f"/api/projects/{project['id']}/train", json=QUICK_TRAIN).json()["job"]
        events = []
        with client.stream("GET", f"/api/jobs/{job}/events", timeout=300) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
        return {"project": project["id"], "job": job, "events": events, "shapes": shapes}


def test_projects_are_created_listed_renamed_and_refused_clearly(client):
    created = client.post("/api/projects", json={"name": "fruit"})
    assert created.status_code == 201 and created.json()["name"] == "fruit" and created.json()["images"] == 0
    assert created.json()["check"]["problems"] == ["add photos to at least two classes"]
    pid = created.json()["id"]
    again = client.post("/api/projects", json={"name": "fruit"})
    assert again.status_code == 409 and again.json()["error"] == "a project named 'fruit' exists already"
    assert client.post("/api/projects", json={"name": "a/b"}).status_code == 422
    assert client.patch(f"/api/projects/{pid}", json={"name": "fruits"}).json()["name"] == "fruits"
    assert "fruits" in [p["name"] for p in client.get("/api/projects").json()["projects"]]
    missing = client.get("/api/projects/999999")
    assert missing.status_code == 404 and missing.json() == {"error": "no project 999999", "code": "not_found"}
    phone = client.get(f"/api/projects/{pid}/phone").json()  # this studio listens on 127.0.0.1 only
    assert phone["available"] is False and "mobiclass studio --host 0.0.0.0" in phone["why"]


def test_model_cards_say_in_words_which_architectures_can_be_chosen_offline_and_online(client, monkeypatch, tmp_path):
    deadline = time.monotonic() + 120  # latencies are measured once per machine, from the studio's start
    while (answer := client.get("/api/models").json())["measuring"]:
        assert time.monotonic() < deadline, "the model speeds were never measured"
        time.sleep(0.5)
    cards = {c["name"]: c for c in answer["models"]}
    assert cards["efficientnet_lite0"]["latency_ms"] > 0 and cards["mobilenet_v3_small"]["latency_ms"] is None
    another = BackgroundServer(build_studio(tmp_path / "another", start_worker=False))  # the same machine
    with another, client_for(another.url) as other:
        again = other.get("/api/models").json()
    assert not again["measuring"] and {c["name"]: c["latency_ms"] for c in again["models"]} == \
        {name: card["latency_ms"] for name, card in cards.items()}
    small = cards["mobilenet_v3_small"]  # its weights are a download, not on this machine
    assert (small["ready"], small["choosable"]) == (False, False)
    assert small["why_not"] == ("its ImageNet weights are not on this machine, and the studio runs offline "
                                "(MOBICLASS_OFFLINE)")
    assert cards["efficientnet_lite0"]["choosable"] and cards["efficientnet_lite0"]["why_not"] is None
    monkeypatch.setenv("MOBICLASS_OFFLINE", "0")  # online: it can be chosen, and the card says what happens
    small = {c["name"]: c for c in client.get("/api/models").json()["models"]}["mobilenet_v3_small"]
    assert small["choosable"] and small["why_not"] == ("its ImageNet weights download the first time it trains "
                                                       "(this needs the internet once)")


def test_uploads_add_photos_report_duplicates_and_unusable_files_and_stay_bounded(client, studio):
    pid = client.post("/api/projects", json={"name": "uploads"}).json()["id"]
    red, blue = png((200, 30, 30)), png((30, 30, 200))
    answer = client.post(f"/api/projects/{pid}/images", data={"label": "red"}, files=[
        ("files", ("r1.png", red, "image/png")), ("files", ("r1-again.png", red, "image/png")),
        ("files", ("notes.txt", b"not a photo", "text/plain"))]).json()
    assert answer == {"class": "red", "added": 1, "duplicates": [{"file": "r1-again.png", "class": "red"}],
                      "errors": [{"file": "notes.txt", "error": "not an image, or a format Pillow cannot read"}]}
    # The same photo in another class is the same photo: refused, naming where it is.
    answer = client.post(f"/api/projects/{pid}/images", data={"label": "blue"},
                         files=[("files", ("b.png", blue, "image/png")), ("files", ("r.png", red, "image/png"))]).json()
    assert answer["added"] == 1 and answer["duplicates"] == [{"file": "r.png", "class": "red"}]
    # A small file that decodes to too many pixels is refused from its header.
    huge = client.post(f"/api/projects/{pid}/images", data={"label": "red"},
                       files=[("files", ("huge.png", png(size=(8000, 6000)), "image/png"))]).json()
    assert huge["errors"][0]["error"].startswith("image too large: 8000x6000 pixels is over the limit of 40000000")
    no_label = client.post(f"/api/projects/{pid}/images", files=[("files", ("b.png", blue, "image/png"))])
    assert no_label.status_code == 422 and "form field 'label'" in no_label.json()["error"]
    too_many = client.post(f"/api/projects/{pid}/images", data={"label": "red"},
                           files=[("files", (f"{i}.png", red, "image/png")) for i in range(21)])
    assert too_many.status_code == 413 and too_many.json()["error"] == "too many images in one request: the limit is 20"
    too_big = client.post(f"/api/projects/{pid}/images", data={"label": "red"},
                          files=[("files", ("big.png", os.urandom(3 * 2**20), "image/png"))])
    assert too_big.status_code == 413
    images = client.get(f"/api/projects/{pid}/images").json()["images"]
    assert [(i["class"], i["width"]) for i in images] == [("red", 48), ("blue", 48)]
    thumbnail = client.get(images[0]["thumbnail"])
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    stored = list((studio.home / "images" / "objects").rglob("*.png"))
    assert all(p.name[:-4] == __import__("hashlib").sha256(p.read_bytes()).hexdigest() for p in stored)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_zip_of_class_folders_is_imported_and_hostile_zips_are_refused(client, studio):
    pid = client.post("/api/projects", json={"name": "zipped"}).json()["id"]
    archive = zip_bytes({"flowers/train/daisy/1.png": png((250, 250, 250)), "flowers/val/daisy/2.png": png((240,) * 3),
                         "tulips/1.png": png((200, 0, 90)), "../../evil/3.png": png((1, 2, 3)),
                         "__MACOSX/tulips/._1.png": b"meta", "README.txt": b"hello"})
    answer = client.post(f"/api/projects/{pid}/images:zip", files={"file": ("flowers.zip", archive)}).json()
    assert answer["added"] == 3 and sorted(c["class"] for c in answer["classes"]) == ["daisy", "tulips"]
    assert answer["skipped"] == ["../../evil/3.png", "__MACOSX/tulips/._1.png", "README.txt"]
    assert not list(studio.home.parent.parent.rglob("3.png"))  # member names are never used as paths
    bomb = zip_bytes({f"big/{i}.png": b"\0" * 300_000 for i in range(5)})  # 1.5 MB unpacked, 1 MB allowed
    refused = client.post(f"/api/projects/{pid}/images:zip", files={"file": ("bomb.zip", bomb)})
    assert refused.status_code == 413 and refused.json()["error"].startswith("the zip unpacks to 1,500,000 bytes")
    many = zip_bytes({f"c/{i}.png": b"x" for i in range(51)})
    assert client.post(f"/api/projects/{pid}/images:zip", files={"file": ("m.zip", many)}).json()["error"] == \
        "the zip holds 51 files, over the limit of 50"
    not_zip = client.post(f"/api/projects/{pid}/images:zip", files={"file": ("x.zip", b"PK nothing")})
    assert not_zip.status_code == 422 and not_zip.json()["error"] == "the upload is not a zip file"


def test_the_doctor_job_finds_a_photo_filed_under_the_wrong_class_and_forgets_it_once_reviewed(client):
    from mobiclass.datasets import fruits

    project = client.post("/api/projects", json={"name": "fruit check"}).json()["id"]
    assert client.post(f"/api/projects/{project}/doctor").json()["code"] == "not_ready"
    for name in ("apple", "kiwi", "orange"):
        photos = sorted((fruits() / "train" / name).iterdir())[:12]
        answer = client.post(f"/api/projects/{project}/images", data={"label": name},
                             files=[("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos])
        assert answer.status_code == 201, answer.text
    planted = sorted((fruits() / "val" / "kiwi").iterdir())[0]  # a kiwi, filed under apple
    client.post(f"/api/projects/{project}/images", data={"label": "apple"},
                files=[("files", ("kiwi.jpg", planted.read_bytes(), "image/jpeg"))])
    kiwi = next(i["id"] for i in client.get(f"/api/projects/{project}/images").json()["images"]
                if i["source"] == "kiwi.jpg")
    job = wait_for(client, client.post(f"/api/projects/{project}/doctor").json()["job"])
    assert job["state"] == "done" and job["metrics"]["photos"] == 37, job
    suspect = next(s for s in job["metrics"]["label_issues"] if s["image"] == kiwi)
    assert (suspect["given"], suspect["suggested"]) == ("apple", "kiwi")
    assert client.patch(f"/api/images/{kiwi}", json={}).status_code == 422  # neither a class nor reviewed
    kept = client.patch(f"/api/images/{kiwi}", json={"reviewed": True}).json()
    assert kept["reviewed"] is True and kept["class"] == "apple"
    again = wait_for(client, client.post(f"/api/projects/{project}/doctor").json()["job"])
    assert kiwi not in [s["image"] for s in again["metrics"]["label_issues"]]
    client.delete(f"/api/projects/{project}")


def test_photos_without_a_class_wait_to_be_labelled_and_the_select_job_picks_which_first(client, trained, tmp_path):
    from mobiclass.datasets import fruits

    def jpegs(folder, count):
        return [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in sorted(folder.iterdir())[:count]]
    project = client.post("/api/projects", json={"name": "fruit to sort"}).json()["id"]
    assert client.post(f"/api/projects/{project}/select", json={}).json()["code"] == "not_ready"
    for name in ("apple", "kiwi"):
        client.post(f"/api/projects/{project}/images", data={"label": name}, files=jpegs(fruits() / "train" / name, 6))
    unsorted = jpegs(fruits() / "val" / "apple", 3) + jpegs(fruits() / "val" / "kiwi", 3)
    added = client.post(f"/api/projects/{project}/images:unlabelled", files=unsorted)
    assert added.status_code == 201 and (added.json()["class"], added.json()["added"]) == (None, 6)
    listed = client.get(f"/api/projects/{project}").json()
    assert (listed["images"], listed["unlabelled"], listed["check"]["images"]) == (12, 6, 12)  # training: 12
    waiting = client.get(f"/api/projects/{project}/images", params={"unlabelled": True}).json()["images"]
    assert [i["class"] for i in waiting] == [None] * 6
    # Before any model: the most typical photos, one per k-means group.
    job = wait_for(client, client.post(f"/api/projects/{project}/select", json={"count": 4}).json()["job"])
    assert job["state"] == "done" and job["kind"] == "select", job
    assert (job["metrics"]["strategy"], job["metrics"]["model"], job["metrics"]["pool"]) == ("typical", None, 6)
    picks = [p["image"] for p in job["metrics"]["picks"]]
    assert len(set(picks)) == 4 and set(picks) <= {i["id"] for i in waiting}
    assert {p["guess"] for p in job["metrics"]["picks"]} == {None}
    filed = client.patch(f"/api/images/{picks[0]}", json={"class": "kiwi"}).json()
    assert (filed["class"], filed["reviewed"]) == ("kiwi", True)
    # The same photo uploaded to a class is labelled by it; a labelled photo uploaded without a class stays put.
    still = next(i for i in waiting if i["id"] != picks[0])
    upload = next(f for f in unsorted if f[1][0] == still["source"])
    again = client.post(f"/api/projects/{project}/images", data={"label": "apple"}, files=[upload]).json()
    assert (again["added"], again["duplicates"]) == (1, [])
    assert client.get(f"/api/images/{still['id']}/thumbnail").status_code == 200
    kept = client.post(f"/api/projects/{project}/images:unlabelled", files=jpegs(fruits() / "train" / "kiwi", 1))
    assert (kept.json()["added"], kept.json()["duplicates"]) == (0, [{"file": "0_100.jpg", "class": "kiwi"}])
    counts = client.get(f"/api/projects/{project}").json()
    assert (counts["images"], counts["unlabelled"]) == (14, 4)
    assert [c["images"] for c in counts["classes"]] == [7, 7]  # apple, kiwi
    # The newest photo deleted, the next one may get its id (SQLite): never the old photo's cached thumbnail.
    newest = max(client.get(f"/api/projects/{project}/images").json()["images"], key=lambda i: i["id"])
    client.delete(f"/api/images/{newest['id']}")
    client.post(f"/api/projects/{project}/images:unlabelled", files=jpegs(fruits() / "val" / "pear", 1))
    latest = max(client.get(f"/api/projects/{project}/images").json()["images"], key=lambda i: i["id"])
    assert latest["id"] == newest["id"] and latest["thumbnail"] != newest["thumbnail"]
    client.delete(f"/api/projects/{project}")
    # With a trained model: the photos it is least sure of, with its guess.
    shapes = draw_shapes(tmp_path / "more", per_class=3, seed=7)
    client.post(f"/api/projects/{trained['project']}/images:unlabelled",
                files=[("files", (p.name, p.read_bytes(), "image/png")) for p in sorted(shapes.glob("*/*.png"))])
    job = wait_for(client, client.post(f"/api/projects/{trained['project']}/select", json={"count": 3}).json()["job"])
    assert (job["state"], job["metrics"]["strategy"], job["metrics"]["model"]) == ("done", "diverse", trained["job"])
    assert len(job["metrics"]["picks"]) == 3
    assert {p["guess"] for p in job["metrics"]["picks"]} <= {"circle", "square", "triangle"}
    margins = [p["margin"] for p in job["metrics"]["picks"]]
    assert margins == sorted(margins)  # least certain first
    for pick in job["metrics"]["picks"]:
        client.delete(f"/api/images/{pick['image']}")


def test_classes_rename_merge_move_and_delete_and_a_deleted_project_leaves_no_files(client, studio):
    pid = client.post("/api/projects", json={"name": "editing"}).json()["id"]
    for label, colour in (("cat", (10, 10, 10)), ("kitten", (20, 20, 20)), ("dog", (30, 30, 30))):
        client.post(f"/api/projects/{pid}/images", data={"label": label},
                    files=[("files", (f"{label}.png", png(colour), "image/png"))])
    classes = {c["name"]: c["id"] for c in client.get(f"/api/projects/{pid}").json()["classes"]}
    merged = client.patch(f"/api/projects/{pid}/classes/{classes['kitten']}", json={"name": "cat"}).json()
    assert merged == {"id": classes["cat"], "name": "cat", "images": 2}
    dog = client.get(f"/api/projects/{pid}/images", params={"class": "dog"}).json()["images"][0]
    assert client.patch(f"/api/images/{dog['id']}", json={"class": "puppy"}).json()["class"] == "puppy"
    project = client.get(f"/api/projects/{pid}").json()
    assert [(c["name"], c["images"]) for c in project["classes"]] == [("cat", 2), ("dog", 0), ("puppy", 1)]
    assert client.delete(f"/api/projects/{pid}/classes/{classes['dog']}").status_code == 204
    assert client.delete(f"/api/images/{dog['id']}").status_code == 204
    assert client.delete(f"/api/images/{dog['id']}").status_code == 404
    stored = {p.name for p in (studio.home / "images" / "objects").rglob("*.png")}
    assert client.delete(f"/api/projects/{pid}").status_code == 204
    assert client.get(f"/api/projects/{pid}").status_code == 404
    left = {p.name for p in (studio.home / "images" / "objects").rglob("*.png")}
    assert len(stored - left) == 2  # the two cat photos; the deleted dog photo was gone already


def test_training_streams_progress_and_ends_with_metrics_and_a_report(client, trained, studio):
    events = trained["events"]
    # the stream opens on the job's state at that moment: queued, or running when the worker was quicker
    assert events[0]["state"] in ("queued", "running") and events[-1]["state"] == "done"
    stages = [e["progress"].get("stage") for e in events]
    assert "head stage: features" in stages and stages[-1] == "done"
    # The stream polls the record (0.4 s): a two-photo epoch can pass between polls, but its history row cannot.
    streamed = {row["epoch"] for e in events for row in e["progress"].get("history", [])}
    assert {"epoch 1/2", "epoch 2/2"} & set(stages) and streamed == {0, 1, 2}
    job = client.get(f"/api/jobs/{trained['job']}").json()
    assert [r["epoch"] for r in job["progress"]["history"]] == [0, 1, 2]
    assert set(job["metrics"]["val"]) == {"accuracy", "macro_f1", "count"} and job["metrics"]["val"]["accuracy"] > 0.5
    # One accuracy per model: the kept epoch's row (validated in fp32) is the evaluation's figure.
    kept = [r for r in job["progress"]["history"] if r["epoch"] == job["metrics"]["best_epoch"]]
    assert round(kept[0]["val_accuracy"], 4) == round(job["metrics"]["val"]["accuracy"], 4)
    best = job["metrics"]["best_epoch"]  # 2 epochs cannot stop early (patience 4)
    assert job["metrics"]["ending"] == "ran all 2 epochs; kept " + (
        f"epoch {best}" if best else "the head-stage model (epoch 0: the new head on the frozen backbone)") + \
        ", the best on the validation photos"
    report = client.get(f"/api/jobs/{trained['job']}/report").json()
    assert report["classes"] == ["circle", "square", "triangle"] and report["count"] == 12  # 4 val photos a class
    assert report["accuracy"] == job["metrics"]["val"]["accuracy"] and len(report["confusion_matrix"]) == 3
    assert all(m["image"]["class"] == m["true"] for m in report["mistakes"])
    project = client.get(f"/api/projects/{trained['project']}").json()
    assert project["model"]["id"] == trained["job"]
    # The training's end warmed the Try page's model: the first Try answer does not wait for its engine.
    models, deadline = studio.server.config.app.state.studio.models, time.monotonic() + 60
    while models.warmed is None:
        assert time.monotonic() < deadline, "the trained model was never warmed"
        time.sleep(0.2)
    assert models.warmed == studio.home / "projects" / str(trained["project"]) / "runs" / "train"


def test_prediction_answers_the_objects_of_v1_predict(client, trained):
    shapes = trained["shapes"]
    answer = client.post(f"/api/projects/{trained['project']}/predict", files=[
        ("files", ("c.png", (shapes / "circle" / "circle_000.png").read_bytes(), "image/png")),
        ("files", ("bad.jpg", b"nope", "image/jpeg"))]).json()
    good, bad = answer["results"]
    assert good["path"] == "c.png" and good["label"] in ("circle", "square", "triangle") and len(good["top_k"]) == 3
    assert bad == {"path": "bad.jpg", "error": "not an image, or a format Pillow cannot read"}
    assert answer["model"] == f"job {trained['job']}" and answer["latency_ms"] > 0


def test_export_runs_as_a_job_and_downloads_one_verified_zip(client, trained):
    job = client.post(f"/api/projects/{trained['project']}/export", json={"format": "onnx", "int8": True}).json()
    done = wait_for(client, job["job"])
    assert done["state"] == "done" and done["metrics"]["verified"] is True, done
    download = client.get(done["download"])
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(download.content)).namelist()
    assert sorted(Path(n).name for n in names) == ["README.md", "classify.py", "labels.txt", "model-card.json",
                                                   "model.int8.onnx", "model.onnx"]
    labels = zipfile.ZipFile(io.BytesIO(download.content)).read(next(n for n in names if n.endswith("labels.txt")))
    assert labels.decode().split() == ["circle", "square", "triangle"]
    bad = client.post(f"/api/projects/{trained['project']}/export", json={"format": "exe"})
    assert bad.status_code == 422 and bad.json()["error"].startswith("format must be one of onnx, tflite")


def test_the_project_keeps_its_hardware_and_deploys_to_it(client, trained, tmp_path, monkeypatch):
    pid = trained["project"]
    monkeypatch.setenv("MOBICLASS_TOOLCHAINS", str(tmp_path / "no-toolchains"))  # none installed, as on a new machine
    try:
        assert client.patch(f"/api/projects/{pid}", json={"target": "raspberry-pi"}).json()["target"] == "raspberry-pi"
        assert client.get(f"/api/projects/{pid}").json()["target"] == "raspberry-pi"  # kept, as after a reload
        cards = {c["name"]: c["fit"] for c in client.get("/api/models?target=k210&image_size=224").json()["models"]}
        assert cards["efficientnet_lite0"]["fits"] is False and cards["efficientnet_lite0"]["reason"].startswith(
            "its largest layer needs 1,505 kB of RAM at uint8; k210 has 760 kB")
        at_128 = {c["name"]: c["fit"] for c in client.get("/api/models?target=k210&image_size=128").json()["models"]}
        assert at_128["mobilenet_v2"]["fits"] is True
        job = client.post(f"/api/projects/{pid}/export", json={}).json()  # no body: the project's target
        assert job["options"] == {"target": "raspberry-pi"}
        done = wait_for(client, job["job"])
        assert done["state"] == "done" and done["metrics"]["verified"] is True, done
        kept = done["metrics"]["formats"][done["metrics"]["kept"]]
        assert (done["metrics"]["kept"], kept["target"], kept["precision"]) == ("ncnn", "raspberry-pi", "fp16")
        assert kept["precision_reason"].startswith("fp16 kept: fp16 loses") and kept["flash_kb"] > 0
        names = zipfile.ZipFile(io.BytesIO(client.get(done["download"]).content)).namelist()
        assert sorted(Path(n).name for n in names) == ["README.md", "classify.py", "labels.txt", "model-card.json",
                                                       "model.ncnn.bin", "model.ncnn.param"]
        client.patch(f"/api/projects/{pid}", json={"target": "rk3588"})
        asked = client.post(f"/api/projects/{pid}/export", json={})
        assert asked.status_code == 409 and asked.json()["code"] == "needs_toolchain"
        assert "(about 1.5 GB, about 40 seconds here)" in asked.json()["error"]
        client.patch(f"/api/projects/{pid}", json={"target": "browser"})  # a web page: test_web.py runs one
        asked = client.post(f"/api/projects/{pid}/export", json={})
        assert asked.status_code == 202 and asked.json()["options"] == {"target": "browser"}
        assert client.post(f"/api/jobs/{asked.json()['job']}/cancel").status_code == 200
        assert wait_for(client, asked.json()["job"])["state"] == "cancelled"
    finally:
        client.patch(f"/api/projects/{pid}", json={"target": "laptop"})


@pytest.mark.parametrize("body, options", [
    ({"format": "maixcam", "int8": False}, {"format": "maixcam", "int8": False, "half": True}),  # bf16, not int8
    ({"format": "rknn"}, {"format": "rknn", "int8": False, "half": False}),  # int8 on the board: no int8 ONNX file
    ({"format": "onnx", "int8": True}, {"format": "onnx", "int8": True, "half": False}),
    ({"format": "k210", "int8": False}, "the K210 runs uint8 models only: keep int8"),
    ({"format": "ncnn", "int8": True}, "ncnn bundles are fp32, or fp16 with half")])
def test_a_boards_int8_box_chooses_the_boards_precision(body, options):
    try:
        chosen = export_options(ExportIn(install_toolchain=True, **body), "laptop")
    except UsageError as exc:
        chosen = str(exc)
    assert chosen == options if isinstance(options, str) else {k: chosen[k] for k in options} == options


def test_training_options_are_checked_and_a_project_not_ready_is_refused(client, trained):
    pid = trained["project"]
    for body, message in (({"data": "/etc"}, "data is not an option here"),
                          ({"image_size": 5}, "image_size must be at least 32"),
                          ({"target": "toaster"}, "target must be one of laptop, phone"),
                          ({"target": "k210", "model": "efficientnet_lite0", "image_size": 224},
                           "efficientnet_lite0 width 1 at 224 px does not fit k210: its largest layer needs 1,505 kB "
                           "of RAM at uint8; k210 has 760 kB; its weights take 5,737 kB at uint8; k210 has 5,500 kB "
                           "of flash; the nearest recipe that fits: mobilenet_v2 width 1 at 128 px")):
        answer = client.post(f"/api/projects/{pid}/train", json=body)
        assert answer.status_code == 422 and answer.json()["error"].startswith(message), answer.json()
    empty = client.post("/api/projects", json={"name": "empty"}).json()["id"]
    refused = client.post(f"/api/projects/{empty}/train", json={})
    assert refused.status_code == 409 and refused.json()["error"] == \
        "the project is not ready to train: add photos to at least two classes"
    no_model = client.post(f"/api/projects/{empty}/predict", files=[("files", ("a.png", png(), "image/png"))])
    assert no_model.status_code == 409 and "has no trained model yet" in no_model.json()["error"]


def test_try_uses_the_first_model_while_training_runs_and_a_running_job_is_cancelled_with_its_process_tree(
        client, trained, studio):
    pid = client.post("/api/projects", json={"name": "still training"}).json()["id"]
    for name in ("circle", "square", "triangle"):
        client.post(f"/api/projects/{pid}/images", files=files_of(trained["shapes"] / name), data={"label": name})
    photo = [("files", ("c.png", (trained["shapes"] / "circle" / "circle_000.png").read_bytes(), "image/png"))]
    assert client.post(f"/api/projects/{pid}/predict", files=photo).json()["code"] == "no_model"
    # Photos decoded at each epoch: a data-loading process works beside the job's (in memory, the job feeds itself).
    running = client.post(f"/api/projects/{pid}/train", json={**QUICK_TRAIN, "epochs": 30, "cache_images": False}
                          ).json()["job"]
    queued = client.post(f"/api/projects/{pid}/train", json=QUICK_TRAIN).json()["job"]
    deadline = time.monotonic() + 120
    while not client.get(f"/api/jobs/{running}").json()["progress"].get("stage", "").startswith("epoch"):
        assert time.monotonic() < deadline, "fine-tuning never started"
        time.sleep(0.2)
    # The head stage's model is the first one ready: Try answers with it while fine-tuning goes on.
    tried = client.post(f"/api/projects/{pid}/predict", files=photo)
    assert tried.status_code == 200, tried.text
    assert tried.json()["model"] == f"job {running} (provisional: the best model so far, still training)"
    assert tried.json()["results"][0]["label"] in ("circle", "square", "triangle")
    assert client.post(f"/api/jobs/{queued}/cancel").json()["state"] == "cancelled"
    [worker] = [p for p in alive(descendants(os.getpid())) if str(studio.home).encode() in
                Path(f"/proc/{p}/cmdline").read_bytes()]
    [job] = [p for p in alive(set(process_children()[worker])) if b"resource_tracker" not in
             Path(f"/proc/{p}/cmdline").read_bytes()]  # the tracker is the worker's, not the job's
    while len(tree := {job} | alive(descendants(job))) < 2:  # the job and its data-loading process
        assert time.monotonic() < deadline, tree
        time.sleep(0.1)
    client.post(f"/api/jobs/{running}/cancel")
    assert wait_for(client, running, timeout=20)["state"] == "cancelled"
    deadline = time.monotonic() + 15
    while alive(tree):
        assert time.monotonic() < deadline, f"left running after cancel: {alive(tree)}"
        time.sleep(0.2)
    again = client.post(f"/api/jobs/{running}/cancel")
    assert again.status_code == 409 and again.json()["error"] == f"job {running} is cancelled already"


def test_the_api_is_documented(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/projects", "/api/projects/{project_id}", "/api/projects/{project_id}/images",
            "/api/projects/{project_id}/images:zip", "/api/projects/{project_id}/train", "/api/jobs/{job_id}",
            "/api/jobs/{job_id}/events", "/api/jobs/{job_id}/cancel", "/api/projects/{project_id}/export",
            "/api/jobs/{job_id}/download", "/api/projects/{project_id}/predict", "/api/projects/{project_id}/select",
            "/api/projects/{project_id}/images:unlabelled"} <= set(paths)
    assert client.get("/docs").status_code == 200


def test_a_token_guards_every_api_call(tmp_path):
    server = BackgroundServer(build_studio(tmp_path, token="s3cret", start_worker=False))
    with server, httpx.Client(base_url=server.url) as client:
        refused = client.get("/api/projects")
        assert refused.status_code == 401 and refused.json()["code"] == "token"
        assert client.get("/api/projects", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/api/projects", params={"token": "s3cret"}).status_code == 200
        assert client.get("/openapi.json").status_code == 401
        assert client.get("/").status_code == 200  # the page itself holds nothing; it asks for the token


def test_a_restart_fails_jobs_that_cannot_resume_with_the_reason(tmp_path):
    from mobiclass.studio.db import Job, Project, database_url, open_database
    from mobiclass.studio.jobs import RESTART_ERROR, recover

    url = database_url(tmp_path)
    sessions = open_database(url)
    with sessions() as session:
        project = Project(name="p")
        session.add_all([project, Job(project=project, kind="export", state="running"),
                         Job(project=project, kind="train", state="running", run_dir="projects/1/runs/gone"),
                         Job(project=project, kind="train", state="queued")])
        session.commit()
    assert recover(sessions, tmp_path) == []  # nothing to resume: the queued job simply stays queued
    with sessions() as session:
        jobs = session.query(Job).order_by(Job.id).all()
        assert [(j.state, j.error) for j in jobs] == [("failed", RESTART_ERROR), ("failed", RESTART_ERROR),
                                                      ("queued", None)]


def test_a_studio_listening_beyond_loopback_makes_and_prints_a_token(tmp_path):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "mobiclass", "studio", "--home", str(tmp_path), "--port",
                                str(port), "--host", "0.0.0.0"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        first, second = process.stdout.readline(), process.stdout.readline()
        token = second.split(": ", 1)[1].strip()
        assert len(token) >= 30 and first.rstrip().endswith(f"#token={token}")
        network = network_url("0.0.0.0", port)  # None on a machine without a route out
        if network:  # phones get the studio's address on the network, with the token, in a QR code
            assert process.stdout.readline().startswith(f"on your network: {network} (phones: the QR code")
            with client_for(f"http://127.0.0.1:{port}") as client:
                client.headers["Authorization"] = f"Bearer {token}"
                project = client.post("/api/projects", json={"name": "phone"}).json()["id"]
                link = client.get(f"/api/projects/{project}/phone").json()
            assert link["available"] and link["url"] == f"{network}capture#project={project}&token={token}"
            assert link["qr"].startswith("data:image/svg+xml")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
