"""Board targets: one flowers-mini MobileNetV2 run exported to every board format, each verified on its vendor's
simulator against PyTorch on the 100 validation photos; a table into the README.

The K210 row uses a 128 px run of the same recipe: MobileNetV2 1.0 at 224 px does not fit the KPU's memory.

    MOBICLASS_TOOLCHAINS=~/.cache/mobiclass/toolchains .venv/bin/python benchmarks/board_targets.py
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, shared_dataset, write_readme_section  # noqa: E402

from mobiclass.export import VerificationError, export  # noqa: E402
from mobiclass.train import train  # noqa: E402

JOBS = [  # (image size, formats, half)
    (224, ["ncnn", "rknn", "maixcam"], False),
    (224, ["ncnn", "rknn", "maixcam"], True),
    (128, ["k210"], False),
]


def main() -> int:
    flowers = shared_dataset()
    work = Path(tempfile.mkdtemp(prefix="mobiclass-boards-"))
    runs, rows = {}, []
    for size, formats, half in JOBS:
        if size not in runs:
            started = time.perf_counter()
            runs[size] = train(flowers, work / f"v2-{size}", model="mobilenet_v2", image_size=size,
                               progress=False).run_dir
            print(f"trained {size} px in {time.perf_counter() - started:.0f} s", flush=True)
        out = work / f"export-{size}-{'half' if half else 'default'}"
        try:
            card = export(runs[size], out=out, formats=["onnx", *formats], half=half, progress=False)
        except VerificationError as exc:
            print(exc, flush=True)
            card = json.loads((out / "model-card.json").read_text())
        reference = card["formats"]["pytorch"]["accuracy"]
        for name in formats:
            entry = card["formats"][name]
            rows.append([name + (f" ({entry['device']})" if "device" in entry else ""), entry["precision"],
                         f"{size} px", f"{entry['size_mb']:.1f}", f"{reference:.2f}", f"{entry['accuracy']:.2f}",
                         f"{entry['top1_agreement']:.2f}", f"{entry['conversion_seconds']:.0f}",
                         f"{entry['simulator_ms_per_image']:.0f}", entry["simulator"]])
            print(rows[-1], flush=True)
    table = markdown_table(["format", "precision", "input", "MB", "PyTorch accuracy", "accuracy", "top-1 agreement",
                            "conversion s", "ms/image (simulator)", "verified on"], rows)
    note = (f"`python benchmarks/board_targets.py` (flowers-mini, MobileNetV2 1.0 with the default recipe, the 100 "
            f"val photos through each vendor's x86 simulator; {machine()}).")
    write_readme_section("boards", f"{note}\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
