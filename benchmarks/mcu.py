"""Microcontrollers and the browser on flowers-mini, against the default EfficientNet-Lite0 run in the same run:
each MCU recipe trained for the STM32H7 (`train --target stm32h7` with that recipe), deployed (`export --target
stm32h7`): its validation accuracy in PyTorch and through the TensorFlow Lite Micro interpreter, the arena the
interpreter allocated, flash, latency (with its source); the first recipe compiled by vela for the Ethos-U55; and
the first recipe again, taught by the reference run on flowers-pool's photos as unlabeled ones (`--teacher RUN
--unlabeled FOLDER`); the browser bundle, checked by its own page in headless Chromium (images/s). Then the
browser bundle against mobiclass on flowers-pool's 600 photos (JPEGs of every size: large ones are decoded at
reduced scale by mobiclass).

    .venv/bin/python benchmarks/mcu.py
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, shared_dataset, write_readme_section  # noqa: E402

from mobiclass.export import VerificationError, export  # noqa: E402
from mobiclass.export.web import check_in_chromium  # noqa: E402
from mobiclass.runtime import open_exported  # noqa: E402
from mobiclass.targets import TARGETS  # noqa: E402
from mobiclass.train import train  # noqa: E402

ARENA_GOAL_KB = 320
POINTS_GOAL = 0.05


def deploy(run: Path, out: Path, target: str) -> tuple[dict, dict, float]:
    started = time.perf_counter()
    try:
        card = export(run, out=out, target=target)
    except VerificationError as exc:
        print(exc, flush=True)
        card = json.loads((out / "model-card.json").read_text())
    return card, card["formats"][card["targets"][target]], time.perf_counter() - started


def main() -> int:
    flowers = shared_dataset()
    work = Path(tempfile.mkdtemp(prefix="mobiclass-mcu-"))
    rows = []
    reference = train(flowers, work / "lite0", progress=False).run_dir  # the default recipe, nothing chosen
    card, entry, seconds = deploy(reference, work / "lite0-export", "laptop")
    lite0 = card["formats"]["pytorch"]["accuracy"]
    rows.append(["laptop (reference)", "efficientnet_lite0 1 @ 224", f"{lite0:.2f}", f"{entry['accuracy']:.2f} "
                 f"({entry['precision']}, ONNX Runtime)", f"{entry['top1_agreement']:.2f}", "-",
                 f"{entry['flash_kb']:,.0f}", f"{entry['latency_ms']:.1f} (measured here)", f"{seconds:.0f}"])
    first_run = None
    for recipe in TARGETS["stm32h7"].recipes:
        run = train(flowers, work / f"v1-{recipe.width_mult}-{recipe.image_size}", target="stm32h7",
                    model=recipe.model, width_mult=recipe.width_mult, image_size=recipe.image_size,
                    progress=False).run_dir
        first_run = first_run or run
        card, entry, seconds = deploy(run, work / f"export-{recipe.width_mult}-{recipe.image_size}", "stm32h7")
        pytorch = card["formats"]["pytorch"]["accuracy"]
        goal = "yes" if lite0 - pytorch <= POINTS_GOAL + 1e-9 and entry["ram_kb"] < ARENA_GOAL_KB else "no"
        rows.append([f"stm32h7 (goal met: {goal})", f"{recipe.model} {recipe.width_mult:g} @ {recipe.image_size}",
                     f"{pytorch:.2f}", f"{entry['accuracy']:.2f} (int8, TFLite Micro)",
                     f"{entry['top1_agreement']:.2f}", f"{entry['ram_kb']:,.1f} (TFLM arena)",
                     f"{entry['flash_kb']:,.0f}", f"{entry['latency_ms']:.0f} (estimate, fitted on 5 ST figures, "
                     f"within 14%)", f"{seconds:.0f}"])
        print(rows[-1], flush=True)
    pool_folder = shared_dataset("flowers-pool") / "images"  # photos without labels: the reference labels them
    recipe = TARGETS["stm32h7"].recipes[0]
    run = train(flowers, work / "v1-distilled", target="stm32h7", teacher=str(reference),
                unlabeled=str(pool_folder), progress=False).run_dir
    card, entry, seconds = deploy(run, work / "export-distilled", "stm32h7")
    pytorch = card["formats"]["pytorch"]["accuracy"]
    goal = "yes" if lite0 - pytorch <= POINTS_GOAL + 1e-9 and entry["ram_kb"] < ARENA_GOAL_KB else "no"
    rows.append([f"stm32h7 (goal met: {goal})", f"{recipe.model} {recipe.width_mult:g} @ {recipe.image_size}, "
                 f"taught by the reference on {len(list(pool_folder.iterdir()))} unlabeled photos", f"{pytorch:.2f}",
                 f"{entry['accuracy']:.2f} (int8, TFLite Micro)", f"{entry['top1_agreement']:.2f}",
                 f"{entry['ram_kb']:,.1f} (TFLM arena)", f"{entry['flash_kb']:,.0f}", f"{entry['latency_ms']:.0f} "
                 f"(estimate, fitted on 5 ST figures, within 14%)", f"{seconds:.0f}"])
    print(rows[-1], flush=True)
    card, entry, seconds = deploy(first_run, work / "export-ethos", "ethos-u55")
    rows.append(["ethos-u55", f"{TARGETS['stm32h7'].recipes[0].model} 0.5 @ 128",
                 f"{card['formats']['pytorch']['accuracy']:.2f}", f"{entry['accuracy']:.2f} (int8, TFLite Micro "
                 f"on vela's input)", f"{entry['top1_agreement']:.2f}", f"{entry['ram_kb']:,.1f} (vela SRAM)",
                 f"{entry['flash_kb']:,.0f} (vela)", f"{entry['latency_ms']:.2f} (vela's estimate)", f"{seconds:.0f}"])
    recipe = TARGETS["browser"].recipes[0]
    run = train(flowers, work / "browser", target="browser", progress=False).run_dir
    card, entry, seconds = deploy(run, work / "export-browser", "browser")
    ips = entry.get("browser_images_per_second")
    rows.append(["browser", f"{recipe.model} {recipe.width_mult:g} @ {recipe.image_size}",
                 f"{card['formats']['pytorch']['accuracy']:.2f}", f"{entry['accuracy']:.2f} ({entry['precision']}, "
                 f"{entry['runtime'].split(' (')[0]})", f"{entry['top1_agreement']:.2f}", "-",
                 f"{entry['flash_kb']:,.0f}", f"{entry['latency_ms']:.1f} ({ips:.1f} images/s, measured in "
                 f"Chromium)" if ips else "unknown", f"{seconds:.0f}"])
    print(rows[-1], flush=True)
    pool = sorted(str(p) for p in pool_folder.iterdir())
    bundle = work / "export-browser" / "web"
    checked = check_in_chromium(bundle, pool)
    ours = open_exported(bundle / json.loads((bundle / "model.json").read_text())["model"], "onnxruntime")
    probabilities = np.stack([p for _, p in ours.predict_files(pool)])
    same = checked["top1"] == probabilities.argmax(1)
    gap = np.abs(checked["confidence"] - probabilities.max(1))
    table = markdown_table(["target", "recipe", "PyTorch accuracy", "accuracy there (precision, runtime)",
                            "top-1 agreement", "RAM kB", "flash kB", "latency ms", "export s"], rows)
    note = (f"`python benchmarks/mcu.py` (flowers-mini, 100 val photos; every run `train --target T`, the MCU "
            f"recipes given explicitly; goal: within {POINTS_GOAL:.0%} of the reference run's PyTorch accuracy and "
            f"an arena under {ARENA_GOAL_KB} kB; {machine()}).\n\nThe browser bundle against mobiclass (ONNX Runtime "
            f"on the same file) on flowers-pool's {len(pool)} JPEGs: the same top class for {same.mean():.1%}, "
            f"top-class confidence within 1e-3 for {(gap < 1e-3).mean():.1%}, {np.median(gap):.1e} apart (median), "
            f"{gap.max():.3f} at worst.")
    write_readme_section("mcu", f"{note}\n\n{table}")
    print(note, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
