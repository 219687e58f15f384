"""Does bf16 autocast cost accuracy, and which precision is faster? The default recipe in k-fold cross-validation
over all labelled flowers-mini photos, fp32 against bf16, fold by fold, for each architecture asked (`--precision
auto` keeps bf16 on CPUs with AVX-512 BF16 or AMX only for the architectures it speeds up: MobileNetV1 and V2).

    python benchmarks/train_precision.py [--folds 3] [--models efficientnet_lite0,mobilenet_v2]

Writes the table into the README (bench:precision).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cross_validation, machine, markdown_table, write_readme_section  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="efficientnet_lite0,mobilenet_v2")
    fold_count, work, manifests = cross_validation(parser.description, "precision", parser)
    models = parser.parse_args().models.split(",")
    from mobiclass.train import train
    results: dict[tuple[str, str], list[dict]] = {(m, p): [] for m in models for p in ("fp32", "bf16")}
    for k, manifest in enumerate(manifests):
        for model, precision in results:
            result = train(manifest, work / f"{model}-{precision}-{k}", model=model, precision=precision,
                           allow_outside=True, progress=False)
            results[(model, precision)].append({"accuracy": result.metrics["val"]["accuracy"],
                                                "finetune": result.metrics["finetune_images_per_s"],
                                                "seconds": result.metrics["train_seconds"]})
            print(model, precision, k, results[(model, precision)][-1], flush=True)
    rows = []
    for (model, precision), folds in results.items():
        accuracy = [f["accuracy"] for f in folds]
        rows.append([model, precision, " / ".join(f"{a:.3f}" for a in accuracy), f"{statistics.mean(accuracy):.3f}",
                     f"{statistics.median(f['finetune'] for f in folds):.1f}",
                     f"{statistics.median(f['seconds'] for f in folds):.0f} s"])
    table = markdown_table(["model", "precision", "accuracy per fold", "mean", "fine-tuning img/s (median)",
                            "training time (median)"], rows)
    write_readme_section("precision", f"`python benchmarks/train_precision.py --folds {fold_count}` (default recipe, "
                                      f"224 px, {fold_count}-fold over all 350 labelled flowers-mini photos; "
                                      f"{machine()}).\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
