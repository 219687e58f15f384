"""Does a board-sized MobileNetV2 gain from being taught? k-fold cross-validation over all labelled flowers-mini
photos: in each fold EfficientNet-Lite0 and MobileNetV2 1.0 are trained with the default recipe, their average is the
teacher (an ensemble), and the students are trained again with ``--teacher`` on the same photos: MobileNetV2 1.0
(ImageNet weights) and a width-0.5 MobileNetV2 at 128 px from scratch (what fits the K210's 6 MB), plain and taught.

    python benchmarks/distill_flowers.py [--folds 3]

Writes the table into the README (bench:distill).
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (cross_validation, machine, markdown_table, validation_probabilities,  # noqa: E402
                    write_readme_section)

SCRATCH_05 = {"model": "mobilenet_v2", "weights": "none", "width_mult": 0.5, "image_size": 128, "epochs": 30,
              "lr": 3e-3, "backbone_lr_mult": 1.0, "head_epochs": 0, "early_stopping": 0, "augment": "default"}


def ensemble_accuracy(runs: list[Path], manifest: Path) -> float:
    """Top-1 accuracy of the runs' averaged (calibrated) probabilities on the fold's validation photos."""
    members = [validation_probabilities(run, manifest) for run in runs]
    probabilities = np.mean([p for p, _ in members], axis=0)
    return float((probabilities.argmax(1) == members[0][1]).mean())


def main() -> int:
    fold_count, work, manifests = cross_validation(__doc__.splitlines()[0], "distill")
    from mobiclass.train import train
    accuracy: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}

    def run(name: str, manifest: Path, k: int, **options) -> Path:
        folder = work / f"{sum(map(len, seconds.values()))}-{k}"  # one folder per run
        result = train(manifest, folder, allow_outside=True, progress=False, **options)
        accuracy.setdefault(name, []).append(result.metrics["val"]["accuracy"])
        seconds.setdefault(name, []).append(result.metrics["train_seconds"])
        print(k, name, accuracy[name][-1], round(seconds[name][-1]), flush=True)
        return result.run_dir

    for k, manifest in enumerate(manifests):
        members = [run("EfficientNet-Lite0, 224 px (default recipe)", manifest, k),
                   run("MobileNetV2 1.0, 224 px, ImageNet weights, plain", manifest, k, model="mobilenet_v2")]
        accuracy.setdefault("teacher: the average of both", []).append(ensemble_accuracy(members, manifest))
        teacher = ",".join(map(str, members))
        run("MobileNetV2 1.0, 224 px, ImageNet weights, taught", manifest, k, model="mobilenet_v2", teacher=teacher)
        run("MobileNetV2 0.5, 128 px, from scratch, plain", manifest, k, **SCRATCH_05)
        run("MobileNetV2 0.5, 128 px, from scratch, taught", manifest, k, **SCRATCH_05, teacher=teacher)
    rows = [[name, " / ".join(f"{a:.3f}" for a in values), f"{statistics.mean(values):.3f}",
             f"{statistics.median(seconds[name]):.0f} s" if name in seconds else ""]
            for name, values in accuracy.items()]
    table = markdown_table(["model", "accuracy per fold", "mean", "training time (median)"], rows)
    write_readme_section("distill", f"`python benchmarks/distill_flowers.py --folds {fold_count}` ({fold_count}-fold "
                                    f"over all 350 labelled flowers-mini photos; distillation at T=2, weight 0.7, "
                                    f"no unlabeled photos; {machine()}).\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
