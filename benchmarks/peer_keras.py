"""mobiclass against the tutorial's own framework, Keras, on this machine, one after the other in one run.

Same data (flowers-mini's 250 training photos), same model (MobileNetV2 1.0, 224 px, batch 32, every layer trained,
no pretrained weights on either side, so that speed alone is compared):

- fine-tuning throughput: median epoch images/s after the first (warm-up) epoch;
- the tutorial's one-image loop (Keras: load, preprocess, model.predict per image) against `mobiclass predict` as a
  whole command on the same 200 photos, and our in-process `Classifier.predict`;
- batched prediction over 1,000 JPEGs: Keras in-process (image_dataset_from_directory, prefetch, model.predict)
  against `mobiclass predict FOLDER` as a whole command (a new process: imports, engine, decoding, results) and
  in-process.

Keras runs in an environment of its own (`make keras-env`; TensorFlow's pins are not ours):

    make bench-keras          # or: .venv/bin/python benchmarks/peer_keras.py --keras-python .venv-keras/bin/python

Writes the table into the README (bench:keras) with the load average at start and end.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, markdown_table, shared_dataset, write_readme_section  # noqa: E402

KERAS_SIDE = Path(__file__).resolve().parent / "keras_side.py"
EPOCHS = 4
LOOP_IMAGES = 200
BATCH_IMAGES = 1000
REPEATS = 3


def keras(python: str, *args) -> dict:
    out = subprocess.run([python, str(KERAS_SIDE), *map(str, args)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ours_train(data: Path, work: Path) -> dict:
    from mobiclass.train import train

    result = train(data, work / "run", model="mobilenet_v2", weights="none", image_size=224, batch_size=32,
                   epochs=EPOCHS, head_epochs=0, unfreeze="all", augment="none", early_stopping=0, calibrate=False,
                   progress=False)
    rates = [r["images_per_s"] for r in result.history if r["stage"] == "finetune"][1:]
    return {"images_per_s": statistics.median(rates), "rates": rates}


def command_speed(folder: Path, count: int) -> float:
    """`mobiclass predict` as a user runs it: a new process, the shipped MobileNetV2, results to a file."""
    start = time.perf_counter()
    subprocess.run([str(REPO / ".venv" / "bin" / "mobiclass"), "predict", str(folder), "--model", "mobilenet_v2",
                    "--format", "csv", "--out", str(folder.parent / "predictions.csv")], check=True,
                   capture_output=True)
    return count / (time.perf_counter() - start)


def in_process_speed(folder: Path) -> float:
    from mobiclass import load_classifier

    classifier = load_classifier("mobilenet_v2", progress=False)
    classifier.predict(sorted(folder.glob("*.jpg"))[:64])  # warm-up
    start = time.perf_counter()
    results = classifier.predict([str(folder)], top_k=5)
    return len(results) / (time.perf_counter() - start)


def eager_loop_speed(folder: Path, count: int) -> float:
    """The tutorial-style eager PyTorch loop of benchmarks/predict_speed.py, on the same photos."""
    from predict_speed import tutorial_loop

    from mobiclass import load_classifier

    classifier = load_classifier("mobilenet_v2", engine="torch", progress=False)
    return tutorial_loop(classifier.module, classifier.preprocessing, sorted(folder.glob("*.jpg"))[:count])


def engine_only_speed() -> float:
    """The bound on any pipeline: the engine `predict` runs (fp32) on batches of 32, without decoding or start-up."""
    from mobiclass import load_classifier
    from mobiclass.runtime.engines import measure_speed

    classifier = load_classifier("mobilenet_v2", progress=False)
    return 32 / statistics.median(measure_speed(classifier.engine.run, (32, 3, 224, 224), 7))


def photo_folder(source: list[Path], target: Path, count: int) -> Path:
    target.mkdir(parents=True)
    for i in range(count):
        shutil.copy(source[i % len(source)], target / f"{i:04d}.jpg")
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras-python", default=str(REPO / ".venv-keras" / "bin" / "python"),
                        help="the interpreter of the TensorFlow environment (make keras-env)")
    args = parser.parse_args()
    if not Path(args.keras_python).exists():
        raise SystemExit(f"{args.keras_python} not found: run make keras-env (or pass --keras-python)")
    data = shared_dataset("flowers-mini")
    work = Path(tempfile.mkdtemp(prefix="mobiclass-peer-"))
    os.environ["MOBICLASS_HOME"] = str(work / "cache")
    load_start = os.getloadavg()[0]
    photos = sorted(data.rglob("*.jpg"))
    loop_folder = photo_folder(photos, work / "loop", LOOP_IMAGES)
    batch_folder = photo_folder(photos, work / "batch", BATCH_IMAGES)
    try:
        k_train = keras(args.keras_python, "train", data / "train", EPOCHS)
        print("keras train", k_train, flush=True)
        o_train = ours_train(data, work)
        print("ours train", o_train, flush=True)
        k_loop = keras(args.keras_python, "loop", loop_folder, LOOP_IMAGES)
        command_speed(loop_folder, LOOP_IMAGES)  # warm: the ONNX export and the engine choice are cached
        o_loop_command = command_speed(loop_folder, LOOP_IMAGES)
        # This machine's speed wanders by tens of percent from minute to minute: each side three times, alternating.
        k_batches, o_commands, o_in_process_runs = [], [], []
        for _ in range(REPEATS):
            k_batches.append(keras(args.keras_python, "batched", batch_folder)["images_per_s"])
            o_commands.append(command_speed(batch_folder, BATCH_IMAGES))
            o_in_process_runs.append(in_process_speed(batch_folder))
        k_batch = {"images_per_s": statistics.median(k_batches)}
        o_batch_command, o_in_process = statistics.median(o_commands), statistics.median(o_in_process_runs)
        print("batched", k_batches, o_commands, o_in_process_runs, flush=True)
        eager = eager_loop_speed(batch_folder, 300)
        engine_only = engine_only_speed()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()[0]
    versions = k_train["versions"]
    rows = [["fine-tuning, images/s (median epoch after the first)", f"{k_train['images_per_s']:.1f}",
             f"{o_train['images_per_s']:.1f}", f"**{o_train['images_per_s'] / k_train['images_per_s']:.2f}x**"],
            [f"the tutorial's one-image loop ({LOOP_IMAGES} photos), images/s", f"{k_loop['images_per_s']:.1f}",
             f"`predict` command {o_loop_command:.0f}", f"{o_loop_command / k_loop['images_per_s']:.1f}x"],
            [f"batched prediction, {BATCH_IMAGES:,} JPEGs, images/s (median of {REPEATS})",
             f"{k_batch['images_per_s']:.0f} (in-process)",
             f"`predict` command {o_batch_command:.0f}; in-process {o_in_process:.0f}",
             f"**{o_batch_command / k_batch['images_per_s']:.2f}x** / {o_in_process / k_batch['images_per_s']:.2f}x"],
            ["the same 1,000 JPEGs against a tutorial-style eager PyTorch loop (Pillow, batch 1; 300 photos)",
             "-", f"loop {eager:.0f}; `predict` command {o_batch_command:.0f}",
             f"{o_batch_command / eager:.1f}x"],
            ["the bound: `predict`'s fp32 engine alone (batch 32, no decoding, no start-up) against the same loop",
             "-", f"engine {engine_only:.0f}", f"{engine_only / eager:.1f}x"]]
    table = markdown_table(["job", f"Keras {versions['keras']} (TensorFlow {versions['tensorflow']})", "mobiclass",
                            "ratio"], rows)
    write_readme_section("keras", f"`make bench-keras` on {machine()}; load average {load_start:.2f} at start, "
                                  f"{load_end:.2f} at end.\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
