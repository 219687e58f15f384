"""Photos to a deployed bundle through the studio's API, timed step by step on flowers-mini, beside the same work
done with the Python API (train + evaluate + export) in the same run.

    python benchmarks/studio_flowers.py

Writes the table into the README (bench:studio). The studio runs in-process with its worker, over real HTTP.
"""
from __future__ import annotations

import io
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import httpx  # noqa: E402

from common import machine, markdown_table, shared_dataset, write_readme_section  # noqa: E402
from helpers import BackgroundServer  # noqa: E402


def studio_path(data: Path, home: Path) -> dict[str, float]:
    from mobiclass.studio.server import build_studio

    times = {}
    with BackgroundServer(build_studio(home)) as server, \
            httpx.Client(base_url=server.url, timeout=600, headers={"X-Mobiclass": "1"}) as client:
        start = time.perf_counter()
        project = client.post("/api/projects", json={"name": "flowers"}).json()["id"]
        for folder in sorted(data.glob("*/*")):  # train/daisy, val/daisy, ...: every labelled photo
            files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in sorted(folder.iterdir())]
            client.post(f"/api/projects/{project}/images", files=files, data={"label": folder.name}).raise_for_status()
        times["upload 350 photos"] = time.perf_counter() - start
        step = time.perf_counter()
        job = client.post(f"/api/projects/{project}/train", json={"model": "efficientnet_lite0"}).json()["job"]
        answer = wait(client, job)
        times["train + evaluate (Lite0, 224 px)"] = time.perf_counter() - step
        times["val accuracy"] = answer["metrics"]["val"]["accuracy"]
        step = time.perf_counter()
        export = client.post(f"/api/projects/{project}/export", json={"format": "onnx", "int8": False}).json()["job"]
        done = wait(client, export)
        bundle = client.get(done["download"]).content
        assert "model.onnx" in " ".join(zipfile.ZipFile(io.BytesIO(bundle)).namelist())
        times["export ONNX, verify, zip, download"] = time.perf_counter() - step
        times["total"] = time.perf_counter() - start
    return times


def wait(client: httpx.Client, job: int) -> dict:
    while True:
        answer = client.get(f"/api/jobs/{job}").json()
        if answer["state"] in ("done", "failed", "cancelled"):
            if answer["state"] != "done":
                raise SystemExit(f"job {job} {answer['state']}: {answer['error']}")
            return answer
        time.sleep(0.5)


def python_path(data: Path, work: Path) -> dict[str, float]:
    """The reference: the same data, model and export with the Python API (the data split in train/ and val/)."""
    from mobiclass.evaluate import evaluate
    from mobiclass.export import export
    from mobiclass.train import train

    times = {"upload 350 photos": 0.0}
    start = time.perf_counter()
    result = train(data, work / "run", model="efficientnet_lite0", progress=False, workers=1)
    evaluate(work / "run", data, split="val")
    times["train + evaluate (Lite0, 224 px)"] = time.perf_counter() - start
    times["val accuracy"] = result.metrics["val"]["accuracy"]
    step = time.perf_counter()
    export(work / "run", work / "export")
    times["export ONNX, verify, zip, download"] = time.perf_counter() - step
    times["total"] = time.perf_counter() - start
    return times


def main() -> int:
    data = shared_dataset("flowers-mini")
    work = Path(tempfile.mkdtemp(prefix="mobiclass-studio-bench-"))
    os.environ["MOBICLASS_HOME"] = str(work / "cache")
    studio = studio_path(data, work / "studio")
    reference = python_path(data, work / "python")
    rows = [[name, f"{studio[name]:.3f}" if name == "val accuracy" else f"{studio[name]:.0f} s",
             f"{reference[name]:.3f}" if name == "val accuracy" else f"{reference[name]:.0f} s"] for name in studio]
    table = markdown_table(["step", "studio (REST API, worker process)", "Python API"], rows)
    write_readme_section("studio", f"Measured with `python benchmarks/studio_flowers.py` on {machine()}: "
                                   f"flowers-mini's "
                                   f"350 labelled photos to a downloaded, verified ONNX bundle.\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
