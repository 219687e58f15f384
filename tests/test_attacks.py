"""The studio and the service attacked as an attacker and a careless user would: over real HTTP on loopback, with
real subprocesses killed for real, hostile zips, a full disk, and pages on other origins in Chromium. Each test is
one item of what once fell (issue 24)."""
from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from helpers import BackgroundServer, alive, chromium_or_skip, descendants, draw_shapes, free_port
from mobiclass.studio.server import build_studio

PROGRAM = {"X-Mobiclass": "1"}  # what the README tells scripts to send with a POST that is not JSON


def png(colour=(200, 30, 30), size=(48, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def zip_of(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def zeros_behind_a_png_header(size: int) -> bytes:
    """What a zip bomb holds: a real PNG's first bytes, then zeros (a few hundred kB once deflated)."""
    return png()[:64] + bytes(size)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    home = tmp_path_factory.mktemp("attacked")
    app = build_studio(home, start_worker=False, max_zip_mb=8, max_zip_member_mb=2, max_zip_members=50)
    with BackgroundServer(app) as running:
        running.home = home
        yield running


@pytest.fixture
def http(studio):
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        yield client


def new_project(http: httpx.Client, name: str, classes=("red", "blue")) -> int:
    pid = http.post("/api/projects", json={"name": name}).json()["id"]
    for i, label in enumerate(classes):
        files = [("files", (f"{label}{j}.png", png((60 * i, 10 * j, 90)), "image/png")) for j in range(3)]
        assert http.post(f"/api/projects/{pid}/images", data={"label": label}, files=files,
                         headers=PROGRAM).status_code == 201
    return pid


def stored_files(home: Path) -> dict[str, int]:
    images = home / "images"
    return {folder: sum(1 for p in (images / folder).rglob("*") if p.is_file()) if (images / folder).exists() else 0
            for folder in ("objects", "thumbs", "staging")}


# -- 1. cross-site requests -----------------------------------------------------------------------------------

def test_a_cross_site_request_cannot_change_anything(http, studio):
    pid = new_project(http, "cross-site")
    before = http.get(f"/api/projects/{pid}").json()
    attacks = [
        ("POST", f"/api/projects/{pid}/train", {"Origin": "http://evil.example", "Content-Type": "text/plain"}, b""),
        ("POST", f"/api/projects/{pid}/train", {"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"},
         b"{}"),
        ("POST", f"/api/projects/{pid}/train", {"Sec-Fetch-Site": "same-site", **PROGRAM}, b""),
        ("POST", f"/api/projects/{pid}/train", {"Origin": "null", "Content-Type": "text/plain"}, b""),
        ("POST", f"/api/projects/{pid}/train", {"Content-Type": "text/plain"}, b""),  # a form with no Origin
        ("DELETE", f"/api/projects/{pid}", {"Origin": f"http://127.0.0.1:{int(studio.url.rsplit(':', 1)[1]) + 1}"},
         b""),
        ("PATCH", f"/api/projects/{pid}", {"Origin": "http://evil.example", "Content-Type": "application/json"},
         b'{"name": "pwned"}'),
    ]
    for method, path, headers, body in attacks:
        answer = http.request(method, path, headers=headers, content=body)
        assert answer.status_code == 403 and answer.json()["code"] == "cross_site", (headers, answer.text)
    upload = http.post(f"/api/projects/{pid}/images", data={"label": "evil"}, headers={"Origin": "http://evil.example"},
                       files=[("files", ("x.png", png((1, 2, 3)), "image/png"))])
    assert upload.status_code == 403
    unproven = http.post(f"/api/projects/{pid}/images", data={"label": "evil"},
                         files=[("files", ("x.png", png((1, 2, 3)), "image/png"))])
    assert unproven.status_code == 403 and "X-Mobiclass: 1" in unproven.json()["error"]
    assert http.get(f"/api/projects/{pid}").json() == before  # no job, no class, same name
    # The studio's own page (same origin) and a program (no browser headers) still work.
    own = {"Origin": studio.url, "Sec-Fetch-Site": "same-origin", **PROGRAM}
    assert http.patch(f"/api/projects/{pid}", json={"name": "renamed"}, headers=own).status_code == 200
    assert http.post(f"/api/projects/{pid}/images", data={"label": "blue"}, headers=PROGRAM,
                     files=[("files", ("new.png", png((9, 9, 9)), "image/png"))]).status_code == 201


def test_the_host_header_must_name_this_server(http, studio, tmp_path):
    port = studio.url.rsplit(":", 1)[1]
    rebound = http.get("/api/projects", headers={"Host": f"evil.example:{port}"})
    assert rebound.status_code == 403 and rebound.json()["code"] == "host"
    assert "--allowed-host evil.example" in rebound.json()["error"]
    assert http.patch("/api/projects/1", json={"name": "x"}, headers={"Host": "evil.example"}).status_code == 403
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "LOCALHOST."):
        assert http.get("/api/projects", headers={"Host": host}).status_code == 200, host
    with BackgroundServer(build_studio(tmp_path / "a", start_worker=False, allowed_hosts=("studio.lan",))) as named:
        assert httpx.get(f"{named.url}/api/projects", headers={"Host": "studio.lan:80"}).status_code == 200
        assert httpx.get(f"{named.url}/api/projects", headers={"Host": "other.lan"}).status_code == 403
    # Listening on every interface (a token then guards it): any address typed in a browser, never a foreign name.
    with BackgroundServer(build_studio(tmp_path / "b", start_worker=False, host="0.0.0.0", token="t")) as exposed:
        token = {"Authorization": "Bearer t"}
        assert httpx.get(f"{exposed.url}/api/projects", headers={**token, "Host": "192.168.1.5:8765"}).status_code \
            == 200
        assert httpx.get(f"{exposed.url}/api/projects", headers={**token, "Host": "evil.example"}).status_code == 403


def test_the_service_refuses_foreign_hosts_and_cross_site_posts(tmp_path):
    from mobiclass import load_classifier
    from mobiclass.serve import create_app

    with BackgroundServer(create_app(load_classifier("efficientnet_lite0", engine="onnxruntime"))) as server:
        photo = {"files": ("p.png", png(), "image/png")}
        assert httpx.get(f"{server.url}/v1/model", headers={"Host": "evil.example"}).status_code == 403
        refused = httpx.post(f"{server.url}/v1/predict", files=photo, headers={"Origin": "http://evil.example"})
        assert refused.status_code == 403 and refused.json()["code"] == "cross_site"
        assert httpx.post(f"{server.url}/v1/predict", files=photo).status_code == 200  # curl, as the README shows


def test_a_service_listening_beyond_loopback_needs_its_token(tmp_path):
    port = free_port()
    service = subprocess.Popen([sys.executable, "-m", "mobiclass", "serve", "--model", "efficientnet_lite0",
                                "--host", "0.0.0.0", "--port", str(port)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        address, token_line = service.stdout.readline(), service.stdout.readline()
        token = token_line.split(": ", 1)[1].strip()
        assert len(token) >= 30 and address.rstrip().endswith(f"#token={token}"), (address, token_line)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{url}/healthz"), 120, "the service did not start")
        assert httpx.get(f"{url}/v1/model").status_code == 401
        assert httpx.get(f"{url}/v1/model", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.post(f"{url}/v1/predict", files={"files": ("p.png", png(), "image/png")},
                          params={"token": token}).status_code == 200
        assert httpx.get(f"{url}/").status_code == 200  # the page holds nothing; it sends the token it was given
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False


# -- 3. archives bounded by what they unpack to ----------------------------------------------------------------

def test_zips_are_bounded_by_what_they_really_unpack_to_and_refused_whole(http, studio):
    pid = http.post("/api/projects", json={"name": "zips"}).json()["id"]
    before = stored_files(studio.home)

    def send(data: bytes) -> httpx.Response:
        return http.post(f"/api/projects/{pid}/images:zip", files={"file": ("up.zip", data)}, headers=PROGRAM)

    bomb = zip_of({"daisy/1.png": png(), "daisy/bomb.png": zeros_behind_a_png_header(200 * 2**20)})
    assert len(bomb) < 300_000
    refused = send(bomb)
    assert refused.status_code == 413 and refused.json()["error"] == \
        "daisy/bomb.png unpacks to 209,715,264 bytes, over the limit of 2,097,152 for one photo"
    many = zip_of({f"daisy/{i}.png": zeros_behind_a_png_header(1_900_000) for i in range(6)})  # 11 MB in all
    refused = send(many)
    assert refused.status_code == 413 and refused.json()["error"] == \
        "the zip unpacks to 11,400,384 bytes, over the limit of 8,388,608"
    lying = bytearray(zip_of({"daisy/1.png": zeros_behind_a_png_header(1_500_000)}))
    central = lying.rindex(b"PK\x01\x02")
    lying[central + 24:central + 28] = struct.pack("<I", 1000)  # the directory says 1 kB; the data is 1.5 MB
    refused = send(bytes(lying))
    assert refused.status_code == 422 and refused.json()["error"] == \
        "daisy/1.png is damaged (Bad CRC-32 for file 'daisy/1.png'): the zip is corrupt"
    assert http.get(f"/api/projects/{pid}").json()["images"] == 0
    assert stored_files(studio.home) == before  # nothing kept, nothing staged


def test_a_photo_whose_metadata_fills_the_first_64_kb_is_still_a_photo(http, studio):
    """Phones write EXIF and ICC segments before a JPEG's pixels; a member is judged by its first bytes."""
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription
    photo = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(photo, "JPEG", exif=exif, icc_profile=bytes(30_000))
    pid = http.post("/api/projects", json={"name": "phone photos"}).json()["id"]
    answer = http.post(f"/api/projects/{pid}/images:zip", headers=PROGRAM, files={"file": ("up.zip", zip_of({
        "kept/1.jpg": photo.getvalue(), "kept/notes.jpg": b"not a photo"}))}).json()
    assert answer["added"] == 1 and answer["classes"][0]["errors"] == [
        {"file": "notes.jpg", "error": "not an image, or a format Pillow cannot read"}]


def damaged(kind: str) -> bytes:
    """A zip with one good class and one member damaged as `kind` says."""
    data = bytearray(zip_of({"daisy/1.png": png(), "tulips/2.png": png((1, 1, 1))}))
    local = data.index(b"PK\x03\x04", 1)  # the second member's local header
    central = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 1)
    if kind == "encrypted":
        for offset in (local + 6, central + 8):
            data[offset] |= 0x01
    elif kind == "unknown method":
        for offset in (local + 8, central + 10):
            data[offset:offset + 2] = struct.pack("<H", 97)
    elif kind == "bad CRC":
        for offset in (local + 14, central + 16):
            data[offset:offset + 4] = struct.pack("<I", 0xDEADBEEF)
    elif kind == "corrupt data":
        start = local + 30 + struct.unpack("<H", data[local + 26:local + 28])[0]
        data[start:start + 8] = b"\xff" * 8
    return bytes(data)


@pytest.mark.parametrize("kind, message", [
    ("encrypted", "tulips/2.png is encrypted: upload a zip without a password"),
    ("unknown method", "tulips/2.png is compressed with a method this studio cannot read"),
    ("bad CRC", "tulips/2.png is damaged (Bad CRC-32 for file 'tulips/2.png')"),
    ("corrupt data", "tulips/2.png is damaged"),
])
def test_damaged_zips_answer_4xx_with_the_reason_and_keep_nothing(http, studio, kind, message):
    pid = http.post("/api/projects", json={"name": f"damaged {kind}"}).json()["id"]
    answer = http.post(f"/api/projects/{pid}/images:zip", files={"file": ("up.zip", damaged(kind))}, headers=PROGRAM)
    assert answer.status_code == 422 and answer.json()["error"].startswith(message), answer.json()
    project = http.get(f"/api/projects/{pid}").json()
    assert project["images"] == 0 and project["classes"] == []  # daisy was good: all or nothing


def test_a_zip_with_a_bad_class_name_commits_nothing(http, studio):
    pid = http.post("/api/projects", json={"name": "bad class"}).json()["id"]
    archive = zip_of({"daisy/1.png": png(), "daisy/2.png": png((3, 3, 3)), f"{'x' * 101}/3.png": png((5, 5, 5))})
    answer = http.post(f"/api/projects/{pid}/images:zip", files={"file": ("up.zip", archive)}, headers=PROGRAM)
    assert answer.status_code == 422 and answer.json()["error"].startswith("a class name must be 1 to 100 characters")
    assert http.get(f"/api/projects/{pid}").json()["classes"] == []


def test_a_zip_that_takes_too_long_to_unpack_is_stopped(tmp_path):
    with BackgroundServer(build_studio(tmp_path, start_worker=False, max_zip_seconds=0)) as slow, \
            httpx.Client(base_url=slow.url, headers=PROGRAM) as http:
        pid = http.post("/api/projects", json={"name": "slow"}).json()["id"]
        answer = http.post(f"/api/projects/{pid}/images:zip",
                           files={"file": ("up.zip", zip_of({"a/1.png": zeros_behind_a_png_header(2 * 2**20)}))})
        assert answer.status_code == 413 and answer.json()["error"] == "the zip took more than 0 s to unpack"


# -- 4, 5. requests never name server files; malformed ids and types are 4xx ----------------------------------

def test_no_request_names_a_file_on_the_server(http, studio, tmp_path):
    pid = new_project(http, "paths")
    secret = tmp_path / "secret.pth"
    secret.write_bytes(b"\x80\x02}q\x00.")
    answers = [http.post(f"/api/projects/{pid}/train", json={"model": model}).json() for model in
               ("/etc/passwd", str(secret), str(tmp_path / "nothing"), "../../x", str(studio.home / "projects"))]
    assert len({json.dumps(a) for a in answers}) == 1  # the same answer whether or not the path exists
    assert answers[0]["error"].startswith("model must be an architecture of the catalogue (efficientnet_lite0, ")
    for field in ({"weights": "/etc/passwd"}, {"data": "/etc"}, {"teacher": "/tmp"}, {"out": "/tmp/x"}):
        answer = http.post(f"/api/projects/{pid}/train", json=field)
        assert answer.status_code == 422 and answer.json()["error"] == f"{next(iter(field))} is not an option here"
    assert http.post(f"/api/projects/{pid}/train", json={"model": 10**6}).json()["error"] == \
        "model must be an architecture of the catalogue or the id of a finished training job of this project"
    assert http.get(f"/api/projects/{pid}").json()["job_list"] == []


@pytest.mark.parametrize("method, path, body, status", [
    ("GET", "/api/projects/99999999999999999999", None, 404),
    ("GET", "/api/projects/-1", None, 404),
    ("GET", "/api/projects/abc", None, 422),
    ("GET", "/api/jobs/99999999999999999999", None, 404),
    ("DELETE", "/api/images/99999999999999999999", None, 404),
    ("GET", "/api/projects/{pid}/images?offset=100000000000000000000", None, 422),
    ("GET", "/api/projects/{pid}/images?offset=1e20", None, 422),
    ("POST", "/api/projects/{pid}/export", {"job": "abc"}, 422),
    ("POST", "/api/projects/{pid}/export", {"job": [1]}, 422),
    ("POST", "/api/projects/{pid}/export", {"job": 99999999999999999999}, 422),
    ("POST", "/api/projects/{pid}/train", {"board": ["x"]}, 422),
    ("POST", "/api/projects/{pid}/train", {"epochs": 10**9}, 422),
    ("POST", "/api/projects", {"name": 123}, 422),
    ("POST", "/api/projects", {"name": ["a"]}, 422),
    ("POST", "/api/projects", {"name": ""}, 422),
    ("POST", "/api/projects", [1, 2], 422),
    ("PATCH", "/api/projects/{pid}", {"name": None}, 422),
    ("PATCH", "/api/images/1", {"class": {"a": 1}}, 422),
])
def test_malformed_ids_and_bodies_are_4xx_never_5xx(http, method, path, body, status):
    pid = http.post("/api/projects", json={"name": f"ids {time.monotonic_ns()}"}).json()["id"]
    answer = http.request(method, path.format(pid=pid), json=body, headers=PROGRAM)
    assert answer.status_code == status and "error" in answer.json(), answer.text
    assert not any(p["name"] in ("123", "['a']") for p in http.get("/api/projects").json()["projects"])


# -- 7. concurrent delete and upload of the same photo ----------------------------------------------------------

def test_deleting_a_photo_while_the_same_bytes_arrive_elsewhere_loses_nothing(http, studio):
    a = http.post("/api/projects", json={"name": "race a"}).json()["id"]
    b = http.post("/api/projects", json={"name": "race b"}).json()["id"]
    photos = [png((7, i, 200 - i), size=(64, 64)) for i in range(20)]

    def upload(pid: int, data: bytes, name: str) -> None:
        assert http.post(f"/api/projects/{pid}/images", data={"label": "same"}, headers=PROGRAM,
                         files=[("files", (name, data, "image/png"))]).status_code == 201

    for i, data in enumerate(photos):
        upload(a, data, f"{i}.png")
    in_a = http.get(f"/api/projects/{a}/images").json()["images"]
    with ThreadPoolExecutor(8) as pool:
        jobs = [pool.submit(http.delete, f"/api/images/{image['id']}") for image in in_a]
        jobs += [pool.submit(upload, b, data, f"{i}.png") for i, data in enumerate(photos)]
        for job in jobs:
            job.result()
    in_b = http.get(f"/api/projects/{b}/images").json()["images"]
    assert len(in_b) == 20
    for image in in_b:
        assert http.get(image["thumbnail"]).status_code == 200 and http.get(image["file"]).status_code == 200


# -- 8. a full disk ---------------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 12 MB file system of its own (tmpfs), for the studio's home: filled on purpose by the test."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(folder)]).returncode:
        pytest.skip("a small file system needs root (mount -t tmpfs) on this machine")
    yield folder
    subprocess.run(["umount", "-l", str(folder)])


def test_a_full_disk_answers_507_and_leaves_the_studio_whole(small_disk):
    with BackgroundServer(build_studio(small_disk / "home", start_worker=False)) as full, \
            httpx.Client(base_url=full.url, headers=PROGRAM, timeout=60) as http:
        pid = new_project(http, "before")
        label = http.get(f"/api/projects/{pid}").json()["classes"][0]["id"]
        filler = small_disk / "filler"
        with open(filler, "wb") as stream, pytest.raises(OSError):
            while True:
                stream.write(os.urandom(1 << 16))
                stream.flush()
        photo = png((9, 8, 7), size=(600, 600))
        answers = [http.post(f"/api/projects/{pid}/images", data={"label": "red"},
                             files=[("files", ("big.png", photo, "image/png"))]),
                   http.post("/api/projects", json={"name": "during"}),
                   http.delete(f"/api/projects/{pid}/classes/{label}")]
        for answer in answers:
            assert answer.status_code == 507 and answer.json() == {
                "error": "no space left on the device: free some space and try again (nothing was stored)",
                "code": "no_space"}, answer.text
        filler.unlink()
        project = http.get(f"/api/projects/{pid}").json()
        assert project["images"] == 6 and [c["name"] for c in project["classes"]] == ["blue", "red"]
        assert [p["name"] for p in http.get("/api/projects").json()["projects"]] == ["before"]
        assert not list((small_disk / "home" / "images" / "staging").glob("*"))
        again = http.post(f"/api/projects/{pid}/images", data={"label": "red"},
                          files=[("files", ("big.png", photo, "image/png"))])
        assert again.status_code == 201 and again.json()["added"] == 1


# -- 3, 6. kill -9: mid-upload, and the studio's main process with a job running --------------------------------



def start_studio(home: Path, port: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "mobiclass", "studio", "--home", str(home), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(process.stdout.read())


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_kill_9_mid_upload_leaves_no_rows_or_files_half_done(tmp_path):
    photos = {f"class{c}/{i}.jpg": None for c in range(3) for i in range(120)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n, name in enumerate(photos):
            image = io.BytesIO()
            Image.new("RGB", (640, 480), (n % 256, (n * 7) % 256, (n * 13) % 256)).save(image, "JPEG")
            archive.writestr(name, image.getvalue())
    home, port = tmp_path / "home", free_port()
    studio = start_studio(home, port)
    url = f"http://127.0.0.1:{port}"
    pid = httpx.post(f"{url}/api/projects", json={"name": "killed"}).json()["id"]
    def upload():
        with pytest.raises(httpx.TransportError):  # the studio dies before it answers
            httpx.post(f"{url}/api/projects/{pid}/images:zip", files={"file": ("all.zip", buffer.getvalue())},
                       headers=PROGRAM, timeout=120)
    uploading = threading.Thread(target=upload, daemon=True)
    try:
        uploading.start()
        wait_until(lambda: any((home / "images" / "staging").glob("*/objects/*")), 60, "the upload never started")
        worker = descendants(studio.pid)
        studio.kill()  # kill -9, mid-upload
        studio.wait()
        wait_until(lambda: not alive(worker), 15, "the worker outlived the studio")
        assert any((home / "images" / "staging").rglob("*.jpg"))  # the staged photos are left behind...
        studio = start_studio(home, port)  # ...until the next start cleans them
        images = httpx.get(f"{url}/api/projects/{pid}/images", params={"limit": 5000}).json()["images"]
        assert len(images) in (0, 360)  # all or nothing
        assert stored_files(home) == {"objects": len(images), "thumbs": len(images), "staging": 0}
    finally:
        studio.send_signal(signal.SIGTERM)
        studio.wait(30)


def start_training(http: httpx.Client, shapes: Path, epochs: int, batch_size: int) -> int:
    """A project of the three shapes, and the id of a short training job started on it."""
    pid = http.post("/api/projects", json={"name": "shapes"}).json()["id"]
    for name in ("circle", "square", "triangle"):
        http.post(f"/api/projects/{pid}/images", data={"label": name}, files=[
            ("files", (p.name, p.read_bytes(), "image/png")) for p in sorted((shapes / name).iterdir())])
    return http.post(f"/api/projects/{pid}/train", json={
        "model": "efficientnet_lite0", "image_size": 48, "head_epochs": 5, "feature_views": 1, "epochs": epochs,
        "unfreeze": "2", "batch_size": batch_size}).json()["job"]


def test_a_stopped_then_killed_studio_leaves_no_process_and_resumes_its_training_once(tmp_path):
    """Stopped as a service manager does (SIGTERM) after the first fine-tuning epoch, then killed (kill -9) while the
    restarted job runs again: each time the worker and the job end with the studio; each restart resumes the job from
    its last completed epoch, and one worker runs it."""
    shapes = draw_shapes(tmp_path / "shapes", per_class=8)
    home, port = tmp_path / "home", free_port()
    url = f"http://127.0.0.1:{port}"
    studio = start_studio(home, port)
    try:
        with httpx.Client(base_url=url, headers=PROGRAM, timeout=60) as http:
            job = start_training(http, shapes, epochs=2, batch_size=16)
            progress = lambda: http.get(f"/api/jobs/{job}").json()["progress"]  # noqa: E731
            wait_until(lambda: len(progress().get("history", [])) > 1, 240, "no fine-tuning epoch")
            tree = descendants(studio.pid)
            assert len(tree) >= 2  # the worker and the job's process
            studio.send_signal(signal.SIGTERM)
            studio.wait(60)
            assert not alive(tree), f"left running after SIGTERM: {alive(tree)}"
            studio = start_studio(home, port)
            wait_until(lambda: progress().get("resumed"), 120, "the job did not resume")
            tree = descendants(studio.pid)
            studio.kill()
            studio.wait()
            wait_until(lambda: not alive(tree), 20, f"left running after kill -9: {alive(tree)}")
            studio = start_studio(home, port)
            wait_until(lambda: http.get(f"/api/jobs/{job}").json()["state"] in ("done", "failed"), 300, "no end")
            done = http.get(f"/api/jobs/{job}").json()
        assert done["state"] == "done" and done["progress"]["resumed"] is True, done
        epochs = [r["epoch"] for r in done["progress"]["history"]]
        assert epochs == [0, 1, 2], epochs  # each epoch once: one worker at a time ran it
        workers = [p for p in alive(descendants(studio.pid)) if b"mobiclass.studio.worker" in
                   Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 1
        second = subprocess.run([sys.executable, "-m", "mobiclass.studio.worker", "--home", str(home), "--database",
                                 f"sqlite:///{home / 'studio.db'}"], capture_output=True, text=True, timeout=120,
                                env={**os.environ, "MOBICLASS_WORKER_LOCK_WAIT": "1"})
        assert second.returncode == 1 and "another worker holds" in second.stderr, second.stderr
    finally:
        studio.send_signal(signal.SIGTERM)
        studio.wait(30)


# -- 1, 2 in a browser: a page on another origin, and a page on a name re-pointed at this machine -----------------

EVIL_PAGE = """<!doctype html><html><body><script>
window.attack = (async () => {
  const studio = "STUDIO", results = {};
  const send = async (name, url, options) => {
    try { const r = await fetch(url, options); results[name] = r.type === "opaque" ? "sent blind" : r.status; }
    catch (error) { results[name] = "blocked"; results.why = String(error); }
  };
  await send("train", studio + "/api/projects/PID/train",
             { method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" }, body: "" });
  const form = new FormData();
  form.append("label", "evil");
  form.append("files", new Blob([new Uint8Array([137, 80, 78, 71])], { type: "image/png" }), "x.png");
  await send("upload", studio + "/api/projects/PID/images", { method: "POST", mode: "no-cors", body: form });
  await send("rename", studio + "/api/projects/PID", { method: "PATCH", body: JSON.stringify({ name: "pwned" }),
             headers: { "Content-Type": "application/json", "X-Mobiclass": "1" } });
  await send("read", studio + "/api/projects", {});
  return results;
})();
</script></body></html>"""


def test_pages_on_other_origins_cannot_drive_the_studio_in_chromium(http, studio):
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    pid = new_project(http, "browser target")
    before = http.get(f"/api/projects/{pid}").json()
    page_html = EVIL_PAGE.replace("STUDIO", studio.url).replace("PID", str(pid))
    evil = Starlette(routes=[Route("/", lambda request: HTMLResponse(page_html))])
    port = studio.url.rsplit(":", 1)[1]
    with BackgroundServer(evil) as other, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--host-resolver-rules=MAP evil.example 127.0.0.1",
            # Chromium's own Local Network Access checks would stop the rebound page before the studio sees it;
            # other browsers have none, so they are off here to test the studio's Host check itself.
            "--disable-features=LocalNetworkAccessChecks,PrivateNetworkAccessRespectPreflightResults,"
            "BlockInsecurePrivateNetworkRequests"])
        try:
            page = browser.new_page()
            page.goto(other.url)  # another origin: 127.0.0.1 on another port
            cross_origin = page.evaluate("window.attack")
            form = browser.new_page()  # the classic CSRF: a form posted to the studio
            form.set_content(f'<form method="POST" enctype="text/plain" action="{studio.url}/api/projects/{pid}/'
                             f'train"><input name="a" value="b"></form>')
            with form.expect_navigation():
                form.evaluate("document.forms[0].submit()")
            form_answer = form.locator("body").inner_text()
            # DNS rebinding: the attacker's page was served for evil.example; the name now leads to this studio.
            rebound = browser.new_page()
            attack_url = f"http://evil.example:{port}/"
            rebound.route(attack_url, lambda route: route.fulfill(content_type="text/html", body=EVIL_PAGE.replace(
                "STUDIO", f"http://evil.example:{port}").replace("PID", str(pid))))
            rebound.goto(attack_url)
            rebinding = rebound.evaluate("window.attack")
        finally:
            browser.close()
    assert cross_origin["rename"] == "blocked" and cross_origin["read"] == "blocked", cross_origin
    assert json.loads(form_answer)["code"] == "cross_site"
    assert rebinding == {"train": 403, "upload": 403, "rename": 403, "read": 403}, rebinding
    assert http.get(f"/api/projects/{pid}").json() == before  # no job, no photo, no new name
