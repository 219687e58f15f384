"""Would bf16 inference buy speed without changing answers? OpenVINO compiled in bf16 (its own default on CPUs with
AVX-512 BF16 or AMX) against fp32, on the shipped ImageNet MobileNetV2 exported to ONNX: batch-32 throughput, and
top-1 agreement and the largest confidence change on real photos (all of flowers-mini and the packaged fruits).

    python benchmarks/inference_bf16.py

Writes the table into the README (bench:bf16). mobiclass keeps fp32 on every engine because of what it shows.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, shared_dataset, write_readme_section  # noqa: E402

PRECISIONS = ("f32", "bf16")


def main() -> int:
    os.environ["MOBICLASS_HOME"] = tempfile.mkdtemp(prefix="mobiclass-bf16-")
    import openvino as ov

    from mobiclass import load_classifier
    from mobiclass.datasets import fruits
    from mobiclass.runtime.classifier import softmax
    from mobiclass.runtime.engines import measure_speed

    core = ov.Core()
    if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise SystemExit("this CPU has no bf16 support: nothing to measure")
    classifier = load_classifier("mobilenet_v2", engine="onnxruntime", progress=False)
    compiled = {p: core.compile_model(core.read_model(str(classifier.engine.file)), "CPU",
                                      {"INFERENCE_NUM_THREADS": os.cpu_count(), "PERFORMANCE_HINT": "LATENCY",
                                       "INFERENCE_PRECISION_HINT": p}) for p in PRECISIONS}
    speed = {p: 32 / statistics.median(measure_speed(lambda x, c=c: c([x])[0], (32, 3, 224, 224), 7))
             for p, c in compiled.items()}
    rows = []
    for name, paths in (("flowers-mini", sorted(shared_dataset().glob("*/*/*.jpg"))),
                        ("fruits (packaged)", sorted(fruits().glob("*/*/*.jpg")))):
        batch = np.stack([classifier.prepare(p) for p in paths])
        probabilities = {p: softmax(np.concatenate([c([batch[i:i + 32]])[0] for i in range(0, len(batch), 32)]))
                         for p, c in compiled.items()}
        f32, bf16 = probabilities["f32"], probabilities["bf16"]
        rows.append([name, len(paths), f"{(f32.argmax(1) == bf16.argmax(1)).mean():.3f}",
                     f"{np.abs(f32 - bf16).max():.3f}", f"{speed['f32']:.0f}", f"{speed['bf16']:.0f}",
                     f"{speed['bf16'] / speed['f32']:.2f}x"])
    table = markdown_table(["photos", "count", "top-1 agreement bf16 vs fp32", "largest confidence change",
                            "fp32 img/s", "bf16 img/s", "speed-up"], rows)
    write_readme_section("bf16", f"`python benchmarks/inference_bf16.py` (OpenVINO {ov.__version__}, ImageNet "
                                 f"MobileNetV2 1.0/224, batch 32; {machine()}).\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
