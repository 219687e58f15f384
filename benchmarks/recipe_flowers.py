"""Recipe choices of the default `train` (EfficientNet-Lite0) weighed by k-fold cross-validation over all labelled
flowers-mini photos, with the training time of each: which backbone blocks fine-tuning updates (all 18, or the last
12 or 8: the early blocks run at the highest resolution, so not training them saves the most time), and two
candidates for more accuracy on top of the last 8: stronger augmentation, and twice the fine-tuning epochs.

    python benchmarks/recipe_flowers.py [--folds 5]

Writes the table into the README (bench:recipe).
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cross_validation, machine, markdown_table, write_readme_section  # noqa: E402

VARIANTS = {
    "fine-tune all 18 blocks": {"unfreeze": "all"},
    "fine-tune the last 12 blocks": {"unfreeze": "12"},
    "fine-tune the last 8 blocks": {"unfreeze": "8"},
    "the last 8, default augmentation (25-100 % crops, colour jitter)": {"unfreeze": "8", "augment": "default"},
    "the last 8, 16 epochs": {"unfreeze": "8", "epochs": 16, "early_stopping": 6},
}


def command_options(options: dict) -> str:
    return " ".join(f"--{key.replace('_', '-')} {value}" for key, value in options.items())


def main() -> int:
    fold_count, work, manifests = cross_validation(__doc__.splitlines()[0], "recipe")
    from mobiclass.train import train

    accuracy: dict[str, list[float]] = {name: [] for name in VARIANTS}
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for k, manifest in enumerate(manifests):
        for index, (name, options) in enumerate(VARIANTS.items()):
            result = train(manifest, work / f"{k}-{index}", allow_outside=True, progress=False, **options)
            accuracy[name].append(result.metrics["val"]["accuracy"])
            seconds[name].append(result.metrics["train_seconds"])
            rates[name].append(result.metrics["finetune_images_per_s"])
            print(k, name, accuracy[name][-1], round(seconds[name][-1]), flush=True)
    rows = [[name, f"`{command_options(VARIANTS[name])}`",
             " / ".join(f"{a:.3f}" for a in accuracy[name]), f"**{statistics.mean(accuracy[name]):.3f}**",
             f"{statistics.median(rates[name]):.0f}", f"{statistics.median(seconds[name]):.0f} s"] for name in VARIANTS]
    table = markdown_table(["recipe", "option", "accuracy per fold", "mean", "fine-tuning img/s (median)",
                            "training time (median)"], rows)
    write_readme_section("recipe", f"`python benchmarks/recipe_flowers.py --folds {fold_count}` "
                                   f"({fold_count}-fold over "
                                   f"all 350 labelled flowers-mini photos, EfficientNet-Lite0, 224 px, otherwise the "
                                   f"default recipe; {machine()}).\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
