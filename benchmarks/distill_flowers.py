"""Does a board-sized MobileNetV2 gain from being taught by a bigger run? k-fold cross-validation over all labelled
flowers-mini photos: in each fold the teacher (the default recipe, EfficientNet-Lite0) is trained, then each student
plainly and with ``--teacher`` on the same photos: MobileNetV2 1.0 (ImageNet weights, the default recipe) and a
width-0.5 MobileNetV2 at 128 px from scratch (what fits the K210's 6 MB).

    python benchmarks/distill_flowers.py [--folds 3]

Writes the table into the README (bench:distill).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fold_manifests, machine, markdown_table, shared_dataset, write_readme_section  # noqa: E402

STUDENTS = {
    "MobileNetV2 1.0, 224 px, ImageNet weights": {"model": "mobilenet_v2"},
    "MobileNetV2 0.5, 128 px, from scratch": {"model": "mobilenet_v2", "weights": "none", "width_mult": 0.5,
                                              "image_size": 128, "epochs": 30, "lr": 3e-3, "backbone_lr_mult": 1.0,
                                              "head_epochs": 0, "early_stopping": 0, "augment": "default"},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=3)
    args = parser.parse_args()
    from mobiclass.train import train

    data = shared_dataset("flowers-mini")
    work = Path(tempfile.mkdtemp(prefix="mobiclass-distill-"))
    os.environ["MOBICLASS_HOME"] = str(work / "cache")
    accuracy: dict[str, list[float]] = {"teacher: EfficientNet-Lite0 (default recipe)": []}
    seconds: dict[str, list[float]] = {}
    for k, manifest in enumerate(fold_manifests(data, args.folds, work)):
        teacher = train(manifest, work / f"teacher-{k}", allow_outside=True, progress=False)
        accuracy["teacher: EfficientNet-Lite0 (default recipe)"].append(teacher.metrics["val"]["accuracy"])
        for name, options in STUDENTS.items():
            for taught in (False, True):
                row = f"{name}, {'taught by the teacher' if taught else 'plain'}"
                extra = {"teacher": str(teacher.run_dir)} if taught else {}
                result = train(manifest, work / f"{len(seconds)}-{k}", allow_outside=True, progress=False,
                               **options, **extra)
                accuracy.setdefault(row, []).append(result.metrics["val"]["accuracy"])
                seconds.setdefault(row, []).append(result.metrics["train_seconds"])
                print(k, row, accuracy[row][-1], round(seconds[row][-1]), flush=True)
    rows = [[name, " / ".join(f"{a:.3f}" for a in values), f"{statistics.mean(values):.3f}",
             f"{statistics.median(seconds[name]):.0f} s" if name in seconds else ""]
            for name, values in accuracy.items()]
    table = markdown_table(["model", "accuracy per fold", "mean", "training time (median)"], rows)
    write_readme_section("distill", f"`python benchmarks/distill_flowers.py --folds {args.folds}` ({args.folds}-fold "
                                    f"over all 350 labelled flowers-mini photos; distillation at T=2, weight 0.7, "
                                    f"no unlabeled photos; {machine()}).\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
