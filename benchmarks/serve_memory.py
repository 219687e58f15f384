"""The server's memory under a burst of huge images: 4 concurrent requests of 4 PNGs of SIDE x SIDE pixels, against
`mobiclass serve` with its defaults and with other decode bounds; resident memory idle, at peak, and afterwards.

    .venv/bin/python benchmarks/serve_memory.py            # 36-megapixel PNGs; the figures quoted in the README
    .venv/bin/python benchmarks/serve_memory.py --side 9000  # 81 megapixels: refused from their headers
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PeakMemory, resident_mb, start_mobiclass  # noqa: E402


def burst(png: bytes, server_options: list[str]) -> tuple[list[int], int, int, int]:
    """(answers, idle MB, peak MB, after MB) of one server facing 4 concurrent requests of 4 images."""
    server, url = start_mobiclass(["serve", "--model", "efficientnet_lite0", "--engine", "onnxruntime",
                                   *server_options])
    try:
        idle = resident_mb(server.pid)
        files = [("files", (f"{i}.png", png, "image/png")) for i in range(4)]
        with PeakMemory(server.pid) as memory, ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: httpx.post(f"{url}/v1/predict", files=files, timeout=600).status_code,
                                    range(4)))
            time.sleep(1)
        return answers, idle, memory.peak, resident_mb(server.pid)
    finally:
        server.terminate()
        server.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=6000, help="pixels per side of each PNG (default: 6000)")
    args = parser.parse_args()
    buffer = io.BytesIO()
    Image.new("RGB", (args.side, args.side), (120, 160, 90)).save(buffer, "PNG")
    print(f"{args.side}x{args.side} = {args.side ** 2 / 1e6:.1f} MP per image, {len(buffer.getvalue()) / 1e3:.0f} kB")
    for label, options in [("defaults (2 decodes at once)", []), ("1 decode at once", ["--max-decodes", "1"]),
                           ("16 decodes at once", ["--max-decodes", "16", "--max-request-pixels", "2000000000"])]:
        answers, idle, peak, after = burst(buffer.getvalue(), options)
        print(f"{label}: answers {answers}; resident MB idle {idle}, peak {peak}, after {after}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
