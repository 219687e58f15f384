"""The installed ``mobiclass`` command, run as a person types it (a subprocess, its exit code, its words): every
command's normal path, and the edge invocations that once ended in a traceback or the wrong exit code."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from helpers import MOBICLASS, TFLITE_V2, draw_shapes, free_port, mobiclass

QUICK_TRAIN = ["--image-size", "64", "--head-epochs", "5", "--epochs", "1", "--unfreeze", "2", "--batch-size", "16",
               "--workers", "0", "--quiet"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A folder as a user has it: a few photos of three shapes, a photo, odds and ends; one run trained by the
    command itself."""
    root = tmp_path_factory.mktemp("user")
    draw_shapes(root / "shapes", per_class=8)
    Image.new("RGB", (40, 40), (1, 2, 3)).save(root / "photo.jpg")
    done = mobiclass("train", "shapes", "--out", "run", *QUICK_TRAIN, cwd=root)
    assert done.returncode == 0 and done.stdout.startswith("run: val accuracy "), done.stdout + done.stderr
    return root


@pytest.fixture(scope="module")
def read_only(tmp_path_factory) -> Path:
    """A folder nothing can be written into, even by root (a read-only mount); permissions when not root."""
    folder = tmp_path_factory.mktemp("read-only")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)]).returncode:
        pytest.skip("cannot mount a read-only folder here")
    yield folder
    subprocess.run(["umount", str(folder)])


def test_every_command_runs_as_a_user_types_it(workspace, tmp_path):
    """The normal path of each command, through the installed console script: exit 0, its output, no traceback."""
    run = workspace / "run"
    photo = workspace / "shapes" / "circle" / "circle_000.png"
    predicted = json.loads(mobiclass("predict", photo, "--model", run, "--format", "json", cwd=workspace).stdout)
    assert predicted[0]["label"] in ("circle", "square", "triangle") and len(predicted[0]["top_k"]) == 3
    evaluated = mobiclass("evaluate", "shapes", "--model", run, "--out", tmp_path / "evaluation", cwd=workspace)
    assert evaluated.returncode == 0 and (tmp_path / "evaluation" / "report.html").is_file()
    exported = mobiclass("export", "--model", run, "--format", "onnx,torchscript,tflite,ncnn",
                         "--out", tmp_path / "export", cwd=workspace, timeout=600)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    card = json.loads((tmp_path / "export" / "model-card.json").read_text())
    assert card["verified"] and set(card["formats"]) == {"pytorch", "onnx", "torchscript", "tflite", "ncnn"}
    assert card["formats"]["tflite"]["top1_agreement"] == 1.0
    assert re.search(r"^│ pytorch +│ \(reference\)", exported.stdout, re.M), exported.stdout
    squares = [mobiclass("predict", "shapes/square", "--model", model, "--format", "csv", cwd=workspace).stdout
               for model in (run, tmp_path / "export" / "model.tflite")]
    assert [row.split(",")[1] for row in squares[0].splitlines()] == \
        [row.split(",")[1] for row in squares[1].splitlines()]  # the TFLite file answers as the run does
    compared = mobiclass("compare", "--model", run, tmp_path / "export" / "model.onnx", "--runs", "2",
                         "--out", tmp_path / "compare", cwd=workspace)
    assert compared.returncode == 0 and (tmp_path / "compare" / "compare.csv").is_file()
    tuned = mobiclass("tune", "shapes", "--trials", "1", "--out", tmp_path / "tune", *QUICK_TRAIN, cwd=workspace)
    assert tuned.returncode == 0 and (tmp_path / "tune" / "best.yaml").is_file(), tuned.stderr
    assert mobiclass("models", "--format", "json", cwd=workspace).returncode == 0
    assert mobiclass("toolchains", cwd=workspace).returncode == 0
    imported = mobiclass("import-weights", TFLITE_V2, "--model", "mobilenet_v2", "--out", tmp_path / "v2.safetensors",
                         cwd=workspace)
    assert imported.returncode == 0 and (tmp_path / "v2.safetensors").is_file()
    with served(["serve", "--model", run], workspace) as url:
        answer = httpx.post(f"{url}/v1/predict", files={"files": ("c.png", photo.read_bytes(), "image/png")})
        assert answer.status_code == 200 and answer.json()["results"][0]["path"] == "c.png"
    with served(["studio", "--home", tmp_path / "studio"], workspace) as url:
        created = httpx.post(f"{url}/api/projects", json={"name": "first"})
        assert created.status_code == 201 and created.json()["name"] == "first"


@contextlib.contextmanager
def served(args: list, cwd: Path):
    port = free_port()
    process = subprocess.Popen([MOBICLASS, *map(str, args), "--port", str(port)], cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_listening(url, process)
        yield url
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=60)
        assert "Traceback" not in output, output
        assert process.returncode in (0, -signal.SIGTERM), output  # uvicorn ends by the signal it was sent


def wait_until_listening(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listens on {url}")




# (arguments, exit code, what the last line says); RUN is the trained run, RO a read-only folder.
EDGES = [
    (["predict", "nothing.jpg"], 2, "error: no such file or folder: nothing.jpg"),
    (["predict", "photo.jpg", "--model", "RUN", "--format", "json", "--out", "RO/x.json"], 2,
     "is not writable (Read-only file system)"),
    (["predict", "photo.jpg", "--model", "RUN", "--explain", "RO/heatmaps"], 2, "is not writable"),
    (["predict", "photo.jpg", "--model", "mobilenet_v2", "--weights", "photo.jpg"], 2,
     "error: photo.jpg is not a PyTorch weights file: it is an image (JPEG)"),
    (["predict", "photo.jpg", "--model", "RUN/model.json"], 2, "is not a PyTorch weights file: it is text (JSON)"),
    (["train", "shapes", "--out", "RO/run"], 2, "error: cannot write the run folder"),
    (["train", "shapes", "--config", "photo.jpg", "--out", "t1"], 2,
     "error: photo.jpg is not a YAML file: it is not text"),
    (["train", "singles", "--out", "t1"], 2, "leaves no photo to validate on: give each class at least 2 photos"),
    (["evaluate", "shapes", "--model", "RUN", "--out", "RO/evaluation"], 2, "error: cannot write the evaluation"),
    (["export", "--model", "RUN", "--out", "RO/export"], 2, "error: cannot write the export"),
    (["compare", "--model", "RUN", "--out", "RO/compare"], 2, "error: cannot write the comparison"),
    (["tune", "nothing"], 2, "error: data not found: nothing"),
    (["serve", "--model", "RUN", "--port", "70000"], 2, "argument --port: a port is between 1 and 65535, got 70000"),
    (["studio", "--home", "studio", "--database", "notadb://x"], 2, "error: cannot use the database 'notadb://x'"),
]


@pytest.mark.parametrize("args, code, message", EDGES, ids=[" ".join(a[:2]) + f" {i}" for i, (a, _, _) in
                                                           enumerate(EDGES)])
def test_edge_invocations_say_what_is_wrong_with_the_right_exit_code(workspace, read_only, args, code, message):
    singles = workspace / "singles"
    for i in range(3):
        (singles / f"class{i}").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (80 * i, 0, 0)).save(singles / f"class{i}" / "only.png")
    args = [a.replace("RUN", str(workspace / "run")).replace("RO", str(read_only)) for a in args]
    done = mobiclass(*args, cwd=workspace)
    last = (done.stdout + done.stderr).strip().splitlines()[-1]
    assert done.returncode == code and message in last, (done.returncode, done.stdout + done.stderr)
    assert not (workspace / "t1").exists() and not list(read_only.iterdir())


def test_a_port_in_use_and_a_second_studio_on_one_home_are_refused(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        for command in (["studio", "--home", tmp_path / "a"], ["serve", "--model", "efficientnet_lite0"]):
            done = mobiclass(*command, "--port", port, cwd=tmp_path)
            assert done.returncode == 2 and f"error: port {port} on 127.0.0.1 is in use by another program" in \
                done.stderr, done.stderr
    with served(["studio", "--home", tmp_path / "b"], tmp_path):
        second = mobiclass("studio", "--home", tmp_path / "b", "--port", free_port(), cwd=tmp_path)
        assert second.returncode == 2 and "another mobiclass studio is running with" in second.stderr


def test_broken_links_and_classes_without_validation_photos_are_reported(tmp_path):
    data = tmp_path / "data"
    draw_shapes(data / "train", per_class=4)
    draw_shapes(data / "val", per_class=2, classes=("circle", "square"), seed=1)
    os.symlink(tmp_path / "gone.png", data / "train" / "circle" / "broken.png")
    done = mobiclass("train", data, "--out", "run", "--image-size", "32", "--head-epochs", "1", "--epochs", "0",
                     "--workers", "0", cwd=tmp_path)
    assert done.returncode == 0 and "no validation photo for triangle: the validation figures say nothing about " \
                                    "this class" in done.stderr, done.stderr
    bad = (tmp_path / "run" / "bad_files.csv").read_text().splitlines()
    assert bad == ["path,split,class,error", f"{data}/train/circle/broken.png,train,circle,a broken link: the file "
                                             f"it points to is missing"]
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["classes_without_validation"] == ["triangle"]
