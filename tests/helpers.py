"""Helpers shared by the test modules (imported explicitly; conftest.py holds only fixtures)."""
from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from mobiclass.files import assets_dir, package_resource

REPO = Path(__file__).resolve().parents[1]
ASSETS = assets_dir()
TFLITE_V2 = package_resource("weights/tf2_mobilenet_v2_1.0_224_ptq.tflite")  # shipped with the package
CAT_LABELS = {"tabby", "tiger cat", "Egyptian cat"}
ARTIFACTS = Path(os.environ.get("MOBICLASS_TEST_ARTIFACTS") or REPO / "test-artifacts")  # screenshots

needs_shared_tflite = pytest.mark.skipif(
    not TFLITE_V2.exists(), reason=f"shared MobileNetV2 TFLite weights not found at {TFLITE_V2} (set MOBICLASS_ASSETS)")


def draw_shapes(folder: Path, per_class: int = 16, size: int = 64, seed: int = 0,
                classes=("circle", "square", "triangle")) -> Path:
    """A small synthetic dataset: one folder per shape, random colours, positions and sizes."""
    rng = random.Random(seed)
    for name in classes:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
            draw = ImageDraw.Draw(image)
            r = rng.randrange(size // 5, size // 3)
            cx, cy = rng.randrange(r, size - r), rng.randrange(r, size - r)
            colour = tuple(rng.randrange(256) for _ in range(3))
            if name == "circle":
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
            elif name == "square":
                draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
            else:
                draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
            image.save(folder / name / f"{name}_{i:03d}.png")
    return folder


# Small, fast settings for real (short) training runs in tests.
MOBICLASS = str(Path(sys.executable).with_name("mobiclass"))  # the console script pip installed


def mobiclass(*args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """The installed command, run as a person types it; it must never print a traceback."""
    done = subprocess.run([MOBICLASS, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"})
    output = done.stdout + done.stderr
    assert "Traceback" not in output, f"mobiclass {' '.join(map(str, args))} printed a traceback:\n{output}"
    return done


QUICK = dict(model="efficientnet_lite0", image_size=64, head_epochs=20, feature_views=1, epochs=2, unfreeze="2",
             batch_size=16, workers=0, progress=False)




def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """The command line in this process: its exit code, stdout, and stderr with its line breaks (rich wraps long
    lines) made spaces."""
    from mobiclass.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


class BackgroundServer:
    """uvicorn serving an app on a free loopback port, in a thread of the test process."""

    def __init__(self, app, port: int = 0):
        import uvicorn

        # Live event streams would hold a stop back until their jobs end: cut them after a second, as a restart does.
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
        self.socket = socket.socket()
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart on the same port
        self.socket.bind(("127.0.0.1", port))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def chromium_or_skip() -> str:
    """Debian's Chromium for Playwright; a skip with the reason when absent (a failure where CI requires it)."""
    from mobiclass.export.web import chromium

    executable = chromium()
    if executable is None:
        message = "Chromium not found: apt-get install chromium (or set MOBICLASS_CHROMIUM)"
        if os.environ.get("MOBICLASS_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return executable


def process_children() -> dict[int, list[int]]:
    """Each process's children, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    return children


def descendants(pid: int) -> set[int]:
    """The processes below `pid`."""
    children = process_children()
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    living = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            living.add(pid)
    return living


def hostile_to_int8(run: Path, out: Path) -> Path:
    """A copy of `run` whose logits are squeezed a hundredfold and lifted to 1,000: its float answers keep their
    order, while an int8 output range that must also hold 0 (a step of about 4) rounds their differences away."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    shutil.copytree(run, out)
    path = out / "model.safetensors"
    with safe_open(str(path), "pt") as weights:
        tensors, metadata = {k: weights.get_tensor(k) for k in weights.keys()}, weights.metadata()  # noqa: SIM118
    head = next(k for k in tensors if k.endswith("bias") and tensors[k[:-len("bias")] + "weight"].dim() == 2)
    weight = head[:-len("bias")] + "weight"
    tensors[weight], tensors[head] = tensors[weight] * 0.01, tensors[head] * 0.01 + 1000.0
    save_file(tensors, str(path), metadata=metadata)
    return out
