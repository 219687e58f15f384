"""How honest is the confidence? Out-of-fold predictions over all 350 labelled flowers-mini photos: k-fold
cross-validation of the default recipe (with and without label smoothing), each photo scored by the model that never
saw it; the temperature for each fold is fitted on the other folds' held-out predictions, so no photo calibrates its
own answer. The table also gives the ECE's noise floor: the mean ECE of a perfectly calibrated model with the same
confidences (each answer right with the probability it states), over 350 photos and over 100 (flowers-mini/val's size).

    python benchmarks/calibration_flowers.py [--folds 3]

Writes the table into the README (bench:calibration).
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cross_validation, machine, markdown_table, write_readme_section  # noqa: E402

SMOOTHING = (0.1, 0.0)


def held_out_logits(run: Path, manifest: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The run's raw logits (no temperature) on its fold's validation photos, the same for their mirror images (for
    flip test-time augmentation), and the labels."""
    from mobiclass.data.dataset import scan_dataset
    from mobiclass.loading import load_classifier

    dataset = scan_dataset(manifest, allow_outside=True)
    classifier = load_classifier(run, engine="torch", progress=False)
    samples = dataset.splits["val"]
    batch = np.stack([classifier.prepare(s.path) for s in samples])
    return (classifier.engine.run(batch), classifier.engine.run(np.ascontiguousarray(batch[..., ::-1])),
            np.array([s.label for s in samples]))


def noise_floor(confidence: np.ndarray, photos: int, classes: int = 5, trials: int = 2000, seed: int = 0) -> float:
    """The mean ECE of `photos` answers drawn from `confidence` by a model whose every answer is right exactly as often
    as it says: what ECE measures of sampling noise alone."""
    from mobiclass.evaluate.metrics import calibration_bins

    rng = np.random.default_rng(seed)
    eces = []
    for _ in range(trials):
        drawn = rng.choice(confidence, photos)
        right = rng.random(photos) < drawn
        rest = np.repeat(((1 - drawn) / (classes - 1))[:, None], classes - 1, axis=1)  # never above the top
        probabilities = np.concatenate([drawn[:, None], rest], axis=1)
        eces.append(calibration_bins(np.where(right, 0, 1), probabilities)["ece"])
    return float(np.mean(eces))


def main() -> int:
    fold_count, work, manifests = cross_validation(__doc__.splitlines()[0], "calibration")
    from mobiclass.evaluate.metrics import calibration_bins, fit_temperature, summary_metrics
    from mobiclass.runtime.classifier import softmax
    from mobiclass.train import train

    rows = []
    for smoothing in SMOOTHING:
        folds = []
        for k, manifest in enumerate(manifests):
            result = train(manifest, work / f"ls{smoothing}-{k}", label_smoothing=smoothing, calibrate=False,
                           allow_outside=True, progress=False)
            folds.append(held_out_logits(result.run_dir, manifest))
            print(smoothing, k, result.metrics["val"], flush=True)
        scored, labels, temperatures, mirrored = [], [], [], []
        for k, (logits, flipped, truth) in enumerate(folds):
            others = [f for j, f in enumerate(folds) if j != k]
            temperature = fit_temperature(np.concatenate([o[0] for o in others]),
                                          np.concatenate([o[2] for o in others]))
            temperatures.append(temperature)
            scored.append((softmax(logits), softmax(logits, temperature)))
            mirrored.append((softmax(logits) + softmax(flipped)) / 2)
            labels.append(truth)
        truth = np.concatenate(labels)
        before, after = (np.concatenate([s[i] for s in scored]) for i in (0, 1))
        with_flip = summary_metrics(truth, np.concatenate(mirrored))["accuracy"]
        rows.append([f"{smoothing:g}", f"{summary_metrics(truth, before)['accuracy']:.3f}", f"{with_flip:.3f}",
                     f"{calibration_bins(truth, before)['ece']:.3f}", f"{calibration_bins(truth, after)['ece']:.3f}",
                     f"{summary_metrics(truth, before)['loss']:.3f}", f"{summary_metrics(truth, after)['loss']:.3f}",
                     f"{statistics.median(temperatures):.2f}",
                     f"{noise_floor(after.max(1), len(truth)):.3f} / {noise_floor(after.max(1), 100):.3f}"])
        print(rows[-1], flush=True)
    table = markdown_table(["label smoothing", "accuracy (out of fold)", "with flip TTA", "ECE before",
                            "ECE after temperature",
                            "log loss before", "log loss after", "temperature (median)",
                            "ECE noise floor (350 / 100 photos)"], rows)
    write_readme_section("calibration", f"`python benchmarks/calibration_flowers.py --folds {fold_count}` (default "
                                        f"recipe, EfficientNet-Lite0 224 px, {fold_count}-fold out-of-fold predictions "
                                        f"over all 350 labelled flowers-mini photos, temperatures cross-fitted; "
                                        f"{machine()}).\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
