"""Does bf16 autocast (the default on CPUs with AVX-512 BF16 or AMX) cost accuracy? The default recipe (Lite0) in
k-fold cross-validation over all labelled flowers-mini photos, fp32 against bf16, fold by fold.

    python benchmarks/train_precision.py [--folds 3]

Writes the table into the README (bench:precision).
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cross_validation, machine, markdown_table, write_readme_section  # noqa: E402


def main() -> int:
    fold_count, work, manifests = cross_validation(__doc__.splitlines()[0], "precision")
    from mobiclass.train import train
    results: dict[str, list[dict]] = {"fp32": [], "bf16": []}
    for k, manifest in enumerate(manifests):
        for precision in results:
            result = train(manifest, work / f"{precision}-{k}", precision=precision, allow_outside=True,
                           progress=False)
            results[precision].append({"accuracy": result.metrics["val"]["accuracy"],
                                       "finetune": result.metrics["finetune_images_per_s"],
                                       "seconds": result.metrics["train_seconds"]})
            print(precision, k, results[precision][-1], flush=True)
    rows = []
    for precision, folds in results.items():
        accuracy = [f["accuracy"] for f in folds]
        rows.append([precision, " / ".join(f"{a:.3f}" for a in accuracy), f"{statistics.mean(accuracy):.3f}",
                     f"{statistics.median(f['finetune'] for f in folds):.1f}",
                     f"{statistics.median(f['seconds'] for f in folds):.0f} s"])
    table = markdown_table(["precision", "accuracy per fold", "mean", "fine-tuning img/s (median)",
                            "training time (median)"], rows)
    write_readme_section("precision", f"`python benchmarks/train_precision.py --folds {fold_count}` (default recipe, "
                                      f"EfficientNet-Lite0 224 px, {fold_count}-fold over all 350 labelled "
                                      f"flowers-mini photos; {machine()}).\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
