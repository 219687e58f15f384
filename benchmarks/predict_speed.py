"""Inference speed: MobileNetV2 1.0/224 on each engine, and end-to-end predict over 1,000 real JPEG photos.

Engines (same weights, this machine, same run): PyTorch eager (default layout), PyTorch channels_last,
ONNX Runtime and OpenVINO (fp32 precision) on the fp32 and the int8 file (QDQ, per-channel, calibrated on
real photos). End to end: `Classifier.predict` on the int8 file with the engine `--engine auto`
picks (threaded decoding with JPEG draft mode, batching, inference) against the loop a tutorial would
write (Pillow decode, resize, crop, eager model, one image at a time).
Medians of repeated runs; the table goes into README.md.

    .venv/bin/python benchmarks/predict_speed.py
"""
from __future__ import annotations

import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, shared_dataset, write_readme_section  # noqa: E402

from mobiclass import load_classifier  # noqa: E402
from mobiclass.export import export_onnx, quantize_int8  # noqa: E402
from mobiclass.runtime import measure_speed, open_exported  # noqa: E402

E2E_IMAGES = 1000


def torch_speed(model, batch: int, runs: int, channels_last: bool) -> float:
    x = torch.randn(batch, 3, 224, 224)
    model = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        for i in range(runs + 3):
            start = time.perf_counter()
            model(x)
            if i >= 3:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def tutorial_loop(model, preprocessing, paths: list[Path]) -> float:
    """What a tutorial writes: open, convert, resize, crop, normalise, one eager forward pass per image."""
    mean, std = torch.tensor(preprocessing.mean).view(3, 1, 1), torch.tensor(preprocessing.std).view(3, 1, 1)
    model = model.to(memory_format=torch.contiguous_format)
    start = time.perf_counter()
    with torch.no_grad():
        for path in paths:
            image = Image.open(path).convert("RGB")
            w, h = image.size
            scale = preprocessing.resize / min(w, h)
            image = image.resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR)
            left, top = (image.width - 224) // 2, (image.height - 224) // 2
            image = image.crop((left, top, left + 224, top + 224))
            x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
            model(((x - mean) / std).unsqueeze(0)).argmax(1)
    return len(paths) / (time.perf_counter() - start)


def main() -> int:
    flowers = shared_dataset()
    workdir = Path(tempfile.mkdtemp(prefix="mobiclass-speed-"))
    os.environ.setdefault("MOBICLASS_OFFLINE", "1")
    try:
        classifier = load_classifier("mobilenet_v2", engine="torch")
        photos = sorted(flowers.rglob("*.jpg"))
        fp32_file = export_onnx(classifier, workdir / "model.onnx")
        calibration = [classifier.prepare(str(p)) for p in random.Random(0).sample(photos, 200)]
        batches = (np.stack(calibration[i:i + 20]) for i in range(0, len(calibration), 20))
        int8_file = quantize_int8(fp32_file, workdir / "model.int8.onnx", batches)

        model = classifier.module
        rows = [["PyTorch eager", torch_speed(model, 1, 30, False), torch_speed(model, 32, 5, False)],
                ["PyTorch channels_last", torch_speed(model, 1, 30, True), torch_speed(model, 32, 5, True)]]
        for engine_name, engine in (("ONNX Runtime", "onnxruntime"), ("OpenVINO", "openvino")):
            for label, file in (("fp32", fp32_file), ("int8", int8_file)):
                run = open_exported(file, engine).engine.run
                rows.append([f"{engine_name} {label}", statistics.median(measure_speed(run, (1, 3, 224, 224), 50)),
                             statistics.median(measure_speed(run, (32, 3, 224, 224), 10))])
        rows = [[name, f"{1000 * b1:.1f}", f"{32 / b32:.0f}"] for name, b1, b32 in rows]
        for row in rows:
            print(row, flush=True)
        int8 = open_exported(int8_file, "auto")

        folder = workdir / "photos"
        folder.mkdir()
        copies = [folder / f"{i:04d}.jpg" for i in range(E2E_IMAGES)]
        for i, target in enumerate(copies):
            shutil.copy(photos[i % len(photos)], target)
        int8.predict(copies[:64])  # warm-up
        start = time.perf_counter()
        results = int8.predict([str(folder)], top_k=5, batch_size=32)
        ours = len(results) / (time.perf_counter() - start)
        reference = tutorial_loop(model, classifier.preprocessing, copies[:300])
        e2e = [[f"`Classifier.predict` on the int8 file, {int8.engine.name} (folder of 1,000 JPEGs)",
                f"{ours:.0f}"],
               ["tutorial loop (Pillow + eager PyTorch, batch 1)", f"{reference:.0f}"],
               ["ratio", f"{ours / reference:.1f}x"]]
        print(e2e, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = (f"Measured with `python benchmarks/predict_speed.py` on {machine()}; MobileNetV2 1.0 at 224 "
            f"(the shared TFLite weights imported), medians.\n\n"
            + markdown_table(["engine", "batch 1 latency (ms)", "batch 32 throughput (images/s)"], rows)
            + "\n\nEnd to end (decode + preprocess + inference + results):\n\n"
            + markdown_table(["pipeline", "images/s"], e2e))
    write_readme_section("predict", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
