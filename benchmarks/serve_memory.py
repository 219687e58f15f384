"""The server's memory under a burst of huge images: 4 concurrent requests of 4 PNGs of SIDE x SIDE pixels, against
`mobiclass serve` with its defaults and with other decode bounds; resident memory idle, at peak, and afterwards.

    .venv/bin/python benchmarks/serve_memory.py            # 36-megapixel PNGs; the figures quoted in the README
    .venv/bin/python benchmarks/serve_memory.py --side 9000  # 81 megapixels: refused from their headers
"""
from __future__ import annotations

import argparse
import io
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from PIL import Image


def resident_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))


def burst(png: bytes, server_options: list[str]) -> tuple[list[int], int, int, int]:
    """(answers, idle MB, peak MB, after MB) of one server facing 4 concurrent requests of 4 images."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "mobiclass", "serve", "--model", "efficientnet_lite0",
                               "--engine", "onnxruntime", "--port", str(port), *server_options],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        idle, peak, done = resident_mb(server.pid), [0], threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], resident_mb(server.pid))
                time.sleep(0.02)

        threading.Thread(target=watch, daemon=True).start()
        files = [("files", (f"{i}.png", png, "image/png")) for i in range(4)]
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: httpx.post(f"{url}/v1/predict", files=files, timeout=600).status_code,
                                    range(4)))
        time.sleep(1)
        done.set()
        return answers, idle, peak[0], resident_mb(server.pid)
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
