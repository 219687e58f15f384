"""Two recipe candidates the trainer has no option for, weighed by k-fold cross-validation before building them:
layer-wise learning-rate decay (each fine-tuned block from the top at 0.7x the learning rate of the one above it,
starting from the head's) and mixup (alpha 0.2) while fine-tuning. Both are patched into the default recipe
(EfficientNet-Lite0) for this measurement only; neither is an option of `train`.

    python benchmarks/recipe_candidates.py [--folds 5]

Writes the table into the README (bench:candidates).
"""
from __future__ import annotations

import contextlib
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (cross_validation, machine, markdown_table, validation_probabilities,  # noqa: E402
                    write_readme_section)

import mobiclass.train.trainer as trainer  # noqa: E402
from mobiclass.train.loops import parameter_groups  # noqa: E402

DEFAULT_OPTIMIZER, DEFAULT_EPOCH = trainer.make_optimizer, trainer.train_one_epoch


def decayed_optimizer(model, trainable, config, decay: float = 0.7):
    """AdamW with the head at `lr` and the i-th fine-tuned block from the top at lr x decay^i."""
    levels = [([model.head_modules()], config.lr)] + [([block], config.lr * decay ** (i + 1))
                                                       for i, block in enumerate(reversed(trainable))]
    return torch.optim.AdamW(parameter_groups(levels, config.weight_decay))


def mixup_epoch(forward, batches, optimizer, scheduler, loss_fn, scaler, autocast=contextlib.nullcontext,
                on_batch=None, where="training", alpha: float = 0.2):
    """One fine-tuning epoch on mixed pairs of photos (the head stage, on cached features, is left as it is)."""
    if not isinstance(forward, torch.nn.Module):
        return DEFAULT_EPOCH(forward, batches, optimizer, scheduler, loss_fn, scaler, autocast, on_batch, where)
    rng = np.random.default_rng(0)
    loss_sum, correct, seen = 0.0, 0, 0
    for inputs, labels in batches:
        share, order = float(rng.beta(alpha, alpha)), torch.randperm(len(labels))
        with autocast():
            logits = forward(share * inputs + (1 - share) * inputs[order]).float()
            loss = share * loss_fn(logits, labels) + (1 - share) * loss_fn(logits, labels[order])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum, correct, seen = loss_sum + loss.item() * len(labels), \
            correct + (logits.argmax(1) == labels).sum().item(), seen + len(labels)
        if on_batch:
            on_batch(len(labels), loss_sum, correct, seen)
    return loss_sum, correct, seen


VARIANTS = {
    "default recipe (the last 8 blocks at 0.1x the head's learning rate)": {},
    "layer-wise learning-rate decay 0.7": {"optimizer": decayed_optimizer},
    "mixup, alpha 0.2": {"epoch": mixup_epoch},
}


def main() -> int:
    fold_count, work, manifests = cross_validation(__doc__.splitlines()[0], "candidates")
    from mobiclass.train import train

    accuracy: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    for index, (name, patch) in enumerate(VARIANTS.items()):
        trainer.make_optimizer = patch.get("optimizer", DEFAULT_OPTIMIZER)
        trainer.train_one_epoch = patch.get("epoch", DEFAULT_EPOCH)
        for k, manifest in enumerate(manifests):
            result = train(manifest, work / f"{index}-{k}", allow_outside=True, progress=False)
            probabilities, labels = validation_probabilities(result.run_dir, manifest)
            accuracy.setdefault(name, []).append(float((probabilities.argmax(1) == labels).mean()))
            seconds.setdefault(name, []).append(result.metrics["train_seconds"])
            print(name, k, accuracy[name][-1], round(seconds[name][-1]), flush=True)
    trainer.make_optimizer, trainer.train_one_epoch = DEFAULT_OPTIMIZER, DEFAULT_EPOCH
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
