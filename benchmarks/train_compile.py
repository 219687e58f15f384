"""Does torch.compile speed up the training step here? MobileNetV2 and EfficientNet-Lite0 at 224 px, batch 32, bf16
autocast on the CPU (the default on this machine), eager against compiled on synthetic batches: the median step
after the first, and how long the first (compiling, with an empty compile cache) step takes.

    python benchmarks/train_compile.py

Writes the table into the README (bench:compile).
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, markdown_table, write_readme_section  # noqa: E402

STEPS = 8


def measure(name: str, compiled: bool) -> tuple[float, float]:
    """(seconds of the first step, images/s of the median later step)."""
    import torch
    import torch.nn.functional as F

    from mobiclass.models import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=5).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    forward = torch.compile(model) if compiled else model
    images = torch.randn(32, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 5, (32,))
    seconds = []
    for _ in range(STEPS + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(forward(images).float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    return seconds[0], len(images) / statistics.median(seconds[1:])


def main() -> int:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")  # a cold compile, as a user meets it
    rows = []
    for name in ("mobilenet_v2", "efficientnet_lite0"):
        (_, eager), (first, compiled) = measure(name, False), measure(name, True)
        rows.append([name, f"{eager:.1f}", f"{compiled:.1f}", f"{compiled / eager:.2f}x", f"{first:.0f} s"])
        print(rows[-1], flush=True)
    table = markdown_table(["model", "eager img/s", "compiled img/s", "ratio", "first compiled step"], rows)
    write_readme_section("compile", f"`python benchmarks/train_compile.py` (training step, batch 32, 224 px, bf16 "
                                    f"autocast, synthetic batches; {machine()}).\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
