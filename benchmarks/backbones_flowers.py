"""Which backbone, and which ensemble of backbones, is most accurate on photos it never saw? k-fold cross-validation
over all labelled flowers-mini photos: in each fold every backbone is trained with the default recipe at its own
resolution, and the fold's validation photos are scored by each run and by the average of the runs' calibrated
probabilities (every combination of two or more).

    python benchmarks/backbones_flowers.py [--folds 5]

Writes the table into the README (bench:backbones) and every fold's probabilities into the work folder it prints.
"""
from __future__ import annotations

import itertools
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (cross_validation, machine, markdown_table, validation_probabilities,  # noqa: E402
                    write_readme_section)

BACKBONES = {
    "EfficientNet-Lite0, 224 px": {"model": "efficientnet_lite0", "image_size": 224},
    "EfficientNet-Lite1, 240 px": {"model": "efficientnet_lite1", "image_size": 240},
    "EfficientNet-Lite2, 260 px": {"model": "efficientnet_lite2", "image_size": 260},
    "MobileNetV2 1.0, 224 px": {"model": "mobilenet_v2", "image_size": 224},
}


def main() -> int:
    fold_count, work, manifests = cross_validation(__doc__.splitlines()[0], "backbones")
    print("work folder:", work, flush=True)
    from mobiclass.train import train

    accuracy: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    for k, manifest in enumerate(manifests):
        probabilities = {}
        for index, (name, options) in enumerate(BACKBONES.items()):
            result = train(manifest, work / f"{k}-{index}", allow_outside=True, progress=False, **options)
            probabilities[name], labels = validation_probabilities(result.run_dir, manifest)
            seconds.setdefault(name, []).append(result.metrics["train_seconds"])
            np.save(work / f"{k}-{index}.npy", probabilities[name])
            print(k, name, result.metrics["val"]["accuracy"], round(seconds[name][-1]), flush=True)
        np.save(work / f"{k}-labels.npy", labels)
        for size in range(1, len(BACKBONES) + 1):
            for members in itertools.combinations(BACKBONES, size):
                averaged = np.mean([probabilities[m] for m in members], axis=0)
                key = " + ".join(members) if size > 1 else members[0]
                accuracy.setdefault(key, []).append(float((averaged.argmax(1) == labels).mean()))
        (work / "accuracy.json").write_text(json.dumps(accuracy, indent=1))
    rows = [[name, " / ".join(f"{a:.3f}" for a in values), f"**{statistics.mean(values):.3f}**",
             f"{sum(statistics.median(seconds[m]) for m in name.split(' + ')):.0f} s"]
            for name, values in accuracy.items()]
    table = markdown_table(["backbone(s), default recipe", "accuracy per fold", "mean", "training time (median)"],
                           rows)
    write_readme_section("backbones", f"`python benchmarks/backbones_flowers.py --folds {fold_count}` "
                                      f"({fold_count}-fold "
                                      f"over all 350 labelled flowers-mini photos; each backbone trained with the "
                                      f"default recipe at its own resolution, ensembles average the calibrated "
                                      f"probabilities; {machine()}).\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
