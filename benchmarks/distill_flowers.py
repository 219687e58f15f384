"""Does a board-sized MobileNetV2 gain from being taught? k-fold cross-validation over all labelled flowers-mini
photos: in each fold the teacher is the average of the four backbones of benchmarks/backbones_flowers.py (Lite0,
Lite1, Lite2 and MobileNetV2, each trained with the default recipe), and MobileNetV2 1.0 (ImageNet weights) is trained
again on the same photos, plain and taught, with the default 8 fine-tuning epochs and with 16 (a patient student:
Beyer et al. 2022). With ``--k210`` a width-0.5 MobileNetV2 at 128 px from scratch (what fits the K210's 6 MB) too.

    python benchmarks/distill_flowers.py [--folds 5] [--teachers WORK] [--k210]

``--teachers WORK`` reuses the runs of a finished ``backbones_flowers.py`` (the work folder it printed; the folds are
the same) instead of training them again. Writes the table into the README (bench:distill).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backbones_flowers import BACKBONES  # noqa: E402
from common import (fold_manifests, machine, markdown_table, shared_dataset,  # noqa: E402
                    validation_probabilities, write_readme_section)

PATIENT = {"epochs": 16, "early_stopping": 6}
SCRATCH_05 = {"model": "mobilenet_v2", "weights": "none", "width_mult": 0.5, "image_size": 128, "epochs": 30,
              "lr": 3e-3, "backbone_lr_mult": 1.0, "head_epochs": 0, "early_stopping": 0, "augment": "default"}
MNV2 = "MobileNetV2 1.0, 224 px"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--teachers", type=Path, help="the work folder of a finished backbones_flowers.py run")
    parser.add_argument("--k210", action="store_true", help="also a width-0.5 MobileNetV2 from scratch")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mobiclass-distill-"))
    os.environ["MOBICLASS_HOME"] = str(work / "cache")
    manifests = fold_manifests(shared_dataset("flowers-mini"), args.folds, work)
    from mobiclass.train import train

    accuracy: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}

    def score(name: str, run: Path, manifest: Path, train_seconds: float | None = None) -> np.ndarray:
        probabilities, labels = validation_probabilities(run, manifest)
        accuracy.setdefault(name, []).append(float((probabilities.argmax(1) == labels).mean()))
        if train_seconds is not None:
            seconds.setdefault(name, []).append(train_seconds)
        print(name, accuracy[name][-1], flush=True)
        return probabilities

    def student(name: str, manifest: Path, k: int, **options) -> None:
        folder = work / f"student{sum(map(len, accuracy.values()))}-{k}"  # one folder per run
        result = train(manifest, folder, allow_outside=True, progress=False, **options)
        score(name, result.run_dir, manifest, result.metrics["train_seconds"])

    for k, manifest in enumerate(manifests):
        teachers = []
        for index, (name, options) in enumerate(BACKBONES.items()):
            run = args.teachers / f"{k}-{index}" if args.teachers else \
                train(manifest, work / f"teacher{k}-{index}", allow_outside=True, progress=False, **options).run_dir
            teachers.append(run)
            if name == MNV2:
                score(f"{MNV2}, ImageNet weights, plain", run, manifest)
        labels = validation_probabilities(teachers[0], manifest)[1]
        averaged = np.mean([validation_probabilities(run, manifest)[0] for run in teachers], axis=0)
        accuracy.setdefault("teacher: the average of the four backbones", []).append(
            float((averaged.argmax(1) == labels).mean()))
        teacher = ",".join(map(str, teachers))
        student(f"{MNV2}, ImageNet weights, plain, 16 epochs", manifest, k, model="mobilenet_v2", **PATIENT)
        student(f"{MNV2}, ImageNet weights, taught", manifest, k, model="mobilenet_v2", teacher=teacher)
        student(f"{MNV2}, ImageNet weights, taught, 16 epochs", manifest, k, model="mobilenet_v2", teacher=teacher,
                **PATIENT)
        if args.k210:
            student("MobileNetV2 0.5, 128 px, from scratch, plain", manifest, k, **SCRATCH_05)
            student("MobileNetV2 0.5, 128 px, from scratch, taught", manifest, k, **SCRATCH_05, teacher=teacher)
    rows = [[name, " / ".join(f"{a:.3f}" for a in values), f"**{statistics.mean(values):.3f}**",
             f"{statistics.median(seconds[name]):.0f} s" if name in seconds else ""]
            for name, values in accuracy.items()]
    table = markdown_table(["model", "accuracy per fold", "mean", "training time (median)"], rows)
    command = f"python benchmarks/distill_flowers.py --folds {args.folds}" + " --k210" * args.k210
    write_readme_section("distill", f"`{command}` ({args.folds}-fold over all 350 labelled flowers-mini photos; "
                                    f"distillation at T=2, weight 0.7, no unlabeled photos; scored with predict's "
                                    f"fp32 path; {machine()}).\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
