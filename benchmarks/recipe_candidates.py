"""Two recipe candidates the trainer has no option for, weighed by k-fold cross-validation before building them:
layer-wise learning-rate decay (each fine-tuned block from the top at 0.7x the learning rate of the one above it,
starting from the head's) and mixup (alpha 0.2) while fine-tuning. Both go into the default recipe (EfficientNet-Lite0)
through the trainer's seams (`train(..., seams=Seams(...))`); neither is an option of `train`.

    python benchmarks/recipe_candidates.py [--folds 5]

Writes the table into the README (bench:candidates).
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (cross_validation, machine, markdown_table, validation_probabilities,  # noqa: E402
                    write_readme_section)

from mobiclass.train import Seams  # noqa: E402
from mobiclass.train.loops import parameter_groups  # noqa: E402

CLASSES = 5  # flowers-mini


def decayed_optimizer(model, trainable, config, decay: float = 0.7):
    """AdamW with the head at `lr` and the i-th fine-tuned block from the top at lr x decay^i."""
    levels = [([model.head_modules()], config.lr)] + [([block], config.lr * decay ** (i + 1))
                                                       for i, block in enumerate(reversed(trainable))]
    return torch.optim.AdamW(parameter_groups(levels, config.weight_decay))


def mixup(alpha: float = 0.2, seed: int = 0):
    """A batch transform: each fine-tuning batch mixed with itself in another order, its labels mixed alike."""
    rng = np.random.default_rng(seed)

    def transform(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        share, order = float(rng.beta(alpha, alpha)), torch.randperm(len(labels))
        targets = F.one_hot(labels, CLASSES).float()
        return share * images + (1 - share) * images[order], share * targets + (1 - share) * targets[order]
    return transform


VARIANTS = {
    "default recipe (the last 8 blocks at 0.1x the head's learning rate)": Seams,
    "layer-wise learning-rate decay 0.7": lambda: Seams(optimizer=decayed_optimizer),
    "mixup, alpha 0.2": lambda: Seams(batch_transform=mixup()),
}


def main() -> int:
    fold_count, work, manifests = cross_validation(__doc__.splitlines()[0], "candidates")
    from mobiclass.train import train

    accuracy: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    for index, (name, seams) in enumerate(VARIANTS.items()):
        for k, manifest in enumerate(manifests):
            result = train(manifest, work / f"{index}-{k}", allow_outside=True, progress=False, seams=seams())
            probabilities, labels = validation_probabilities(result.run_dir, manifest)
            accuracy.setdefault(name, []).append(float((probabilities.argmax(1) == labels).mean()))
            seconds.setdefault(name, []).append(result.metrics["train_seconds"])
            print(name, k, accuracy[name][-1], round(seconds[name][-1]), flush=True)
    rows = [[name, " / ".join(f"{a:.3f}" for a in values), f"**{statistics.mean(values):.3f}**",
             f"{statistics.median(seconds[name]):.0f} s"] for name, values in accuracy.items()]
    table = markdown_table(["recipe", "accuracy per fold", "mean", "training time (median)"], rows)
    write_readme_section("candidates", f"`python benchmarks/recipe_candidates.py --folds {fold_count}` ({fold_count}-"
                                       f"fold over all 350 labelled flowers-mini photos, EfficientNet-Lite0, 224 px, "
                                       f"scored with predict's fp32 path; {machine()}).\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
