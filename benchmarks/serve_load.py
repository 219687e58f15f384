"""Load test of `mobiclass serve` on loopback: throughput and p50/p99 latency at 1, 8 and 32 concurrent clients,
with the micro-batcher (its default, and up to 32 images with a 5 ms wait) and without it (every image alone).

The server runs in its own process (`python -m mobiclass serve`, ONNX Runtime, MobileNetV2 1.0/224 from the
shared TFLite weights, or efficientnet_lite0 with --model); the clients are asyncio tasks with httpx in this
process, each posting one real flowers-mini JPEG per request, a bounded number of requests per level. The
engine's own throughput at batch 1, 8 and 32, measured in the same run, is the ceiling to compare with.
The client shares the machine's cores with the server, as it would on one box. The table goes into README.md.

    .venv/bin/python benchmarks/serve_load.py [--model NAME] [--requests 400]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, shared_dataset, start_mobiclass, write_readme_section  # noqa: E402

from mobiclass import load_classifier  # noqa: E402
from mobiclass.evaluate.compare import measure_speed  # noqa: E402

CONCURRENCY = (1, 8, 32)
# (max batch size, max wait ms): the default, a larger batch that waits for company, and no batching at all.
MODES = {"batching 8, no wait (default)": ("8", "0"), "batching 32, 5 ms wait": ("32", "5"),
         "no batching": ("1", "0")}


def mean_batch(url: str) -> tuple[float, float]:
    """(sum, count) of the server's batch-size histogram."""
    values = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(("mobiclass_batch_size_sum", "mobiclass_batch_size_count")):
            values[line.split()[0]] = float(line.split()[1])
    return values["mobiclass_batch_size_sum"], values["mobiclass_batch_size_count"]


async def load(url: str, images: list[tuple[str, bytes]], clients: int, requests: int) -> tuple[float, list[float]]:
    """`clients` tasks posting images until `requests` are answered; (seconds, latencies)."""
    latencies: list[float] = []
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def worker():
            for i in counter:
                name, data = images[i % len(images)]
                start = time.perf_counter()
                response = await client.post("/v1/predict", files=[("files", (name, data, "image/jpeg"))])
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    raise SystemExit(f"request failed: {response.status_code} {response.text[:200]}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - start, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    args = parser.parse_args()
    val = shared_dataset() / "val"
    images = [(p.name, p.read_bytes()) for p in sorted(val.rglob("*.jpg"))]

    engine = load_classifier(args.model, engine="onnxruntime")
    ceiling = {b: b / statistics.median(measure_speed(engine, b, runs=15)) for b in (1, 8, 32)}
    print("engine alone:", ", ".join(f"batch {b} {v:.0f} img/s" for b, v in ceiling.items()))

    rows = []
    for mode, (max_batch, max_wait) in MODES.items():
        process, url = start_mobiclass(["serve", "--model", args.model, "--engine", "onnxruntime",
                                        "--max-batch-size", max_batch, "--max-wait-ms", max_wait])
        try:
            asyncio.run(load(url, images, 8, 64))  # warm-up: connections, thread pools, engine
            for clients in CONCURRENCY:
                before = mean_batch(url)
                seconds, latencies = asyncio.run(load(url, images, clients, args.requests))
                after = mean_batch(url)
                batch = (after[0] - before[0]) / max(after[1] - before[1], 1)
                p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
                rows.append([mode, clients, f"{len(latencies) / seconds:.0f}", f"{p50:.1f}", f"{p99:.1f}",
                             f"{batch:.1f}"])
                print(" | ".join(map(str, rows[-1])), flush=True)
        finally:
            process.terminate()
            process.wait(timeout=60)

    table = markdown_table(["server", "clients", "requests/s", "p50 ms", "p99 ms", "mean batch"], rows)
    note = (f"`python benchmarks/serve_load.py` ({args.model} 1.0/224 on ONNX Runtime fp32, one image per "
            f"request, {args.requests} requests per level from flowers-mini/val JPEGs, client and server on the "
            f"same {os.cpu_count()}-core machine; {machine()}). The engine alone, same run: "
            + ", ".join(f"{v:.0f} img/s at batch {b}" for b, v in ceiling.items()) + ".")
    write_readme_section("serve", f"{note}\n\n{table}")
    print(table)


if __name__ == "__main__":
    main()
