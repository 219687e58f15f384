"""Helpers shared by the benchmark scripts: where the shared assets are, and writing tables into the README."""
from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import torch

from mobiclass.files import assets_dir

REPO = Path(__file__).resolve().parents[1]
ASSETS = assets_dir()


def shared_dataset(name: str = "flowers-mini") -> Path:
    """A dataset of the shared assets, or exit with status 2 saying where it was looked for."""
    folder = ASSETS / "datasets" / name
    if not folder.is_dir():
        raise SystemExit(f"{name} not found at {folder} (set MOBICLASS_ASSETS)")
    return folder


def resident_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))


class PeakMemory:
    """The largest resident memory of process `pid` while the block runs (sampled every 10 ms)."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._done = pid, 0, threading.Event()

    def __enter__(self) -> PeakMemory:
        def watch():
            while not self._done.is_set():
                self.peak = max(self.peak, resident_mb(self.pid))
                time.sleep(0.01)
        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def start_mobiclass(args: list[str], cwd: Path | None = None, env: dict | None = None,
                    timeout: float = 300) -> tuple[subprocess.Popen, str]:
    """`python -m mobiclass ARGS --port P` on a free port, once its /healthz answers: (process, url)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "mobiclass", *args, "--port", str(port)], cwd=cwd, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"mobiclass {args[0]} exited with status {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit(f"mobiclass {args[0]} did not start in {timeout:.0f} s")


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, " \
           f"{torch.get_num_threads()} threads"


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_readme_section(name: str, text: str) -> None:
    """Replace the text between <!-- bench:NAME --> and <!-- /bench:NAME --> in the README."""
    readme = REPO / "README.md"
    content = readme.read_text(encoding="utf-8")
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{text.strip()}\n{end}"
    if start in content:
        content = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, content, flags=re.S)
    else:
        content += f"\n{block}\n"
    readme.write_text(content, encoding="utf-8")


def fold_manifests(data: Path, folds: int, work: Path) -> list[Path]:
    """One CSV per fold: every photo of flowers-mini (train/ and val/), each fold validating on a stratified 1/k."""
    from mobiclass.files import write_csv

    photos = sorted((p, p.parent.name) for p in data.glob("*/*/*") if p.is_file())
    by_class: dict[str, list[Path]] = {}
    for path, label in photos:
        by_class.setdefault(label, []).append(path)
    manifests = []
    for k in range(folds):
        rows = [[str(path), label, "val" if i % folds == k else "train"]
                for label, paths in by_class.items() for i, path in enumerate(paths)]
        manifests.append(write_csv(work / f"fold{k}.csv", ["path", "label", "split"], rows))
    return manifests


def cross_validation(description: str, name: str, parser=None) -> tuple[int, Path, list[Path]]:
    """The set-up every cross-validation benchmark shares: its ``--folds K`` option (added to `parser`, an
    argparse parser with the benchmark's own options, when given), a fresh work folder with its own cache (no
    feature or export cached by another run), and one manifest per fold of flowers-mini."""
    import argparse
    import tempfile

    parser = parser or argparse.ArgumentParser(description=description)
    parser.add_argument("--folds", type=int, default=3)
    folds = parser.parse_args().folds
    work = Path(tempfile.mkdtemp(prefix=f"mobiclass-{name}-"))
    os.environ["MOBICLASS_HOME"] = str(work / "cache")
    return folds, work, fold_manifests(shared_dataset("flowers-mini"), folds, work)


def validation_probabilities(run: Path, manifest: Path):
    """A run's calibrated class probabilities for a fold's validation photos, and their true labels (numpy)."""
    import numpy as np

    from mobiclass.data.dataset import scan_dataset
    from mobiclass.loading import load_classifier

    samples = scan_dataset(manifest, allow_outside=True).splits["val"]
    classifier = load_classifier(run, engine="torch", progress=False)
    probabilities = np.stack([p for _, p in classifier.predict_files([s.path for s in samples])])
    return probabilities, np.array([s.label for s in samples])
