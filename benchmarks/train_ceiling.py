"""What the frozen pretrained features can tell apart on flowers-mini, measured with less noise than 100 val photos.

A linear probe (standardised features, scikit-learn's logistic regression, C=0.03) on the pooled features of every
labelled photo (train + val, 350), scored by 5-fold stratified cross-validation repeated over 4 shuffles, for each
evaluation crop (ImageNet's 0.875 and mobiclass' default 1.0) and model; next to it, the same probe fitted on train/
and scored on val/, the split the accuracy target is set on. The spread of the folds shows how far a 100-photo
split can land from the mean by chance. The table goes into README.md.

    .venv/bin/python benchmarks/train_ceiling.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, shared_dataset, write_readme_section  # noqa: E402

from mobiclass import load_classifier  # noqa: E402
from mobiclass.data import Preprocessing  # noqa: E402
from mobiclass.data.dataset import scan_dataset  # noqa: E402
from mobiclass.data.features import extract_features  # noqa: E402

CROPS = (0.875, 1.0)
FOLDS, SHUFFLES = 5, 4


def probe() -> object:
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.03, max_iter=3000))


def cross_validated(features: np.ndarray, labels: np.ndarray) -> list[float]:
    scores = []
    for shuffle in range(SHUFFLES):
        folds = StratifiedKFold(FOLDS, shuffle=True, random_state=shuffle)
        for fit, score in folds.split(features, labels):
            scores.append(probe().fit(features[fit], labels[fit]).score(features[score], labels[score]))
    return scores


def main() -> int:
    data = shared_dataset()
    dataset = scan_dataset(data)
    train, val = dataset.splits["train"], dataset.splits["val"]
    rows = []
    for model_name in ("efficientnet_lite0", "mobilenet_v2"):
        classifier = load_classifier(model_name, engine="torch")
        base = classifier.preprocessing
        for crop in CROPS:
            start = time.perf_counter()
            prep = Preprocessing.for_size(224, crop, mean=base.mean, std=base.std, interpolation=base.interpolation)
            features, labels = (t.numpy() for t in extract_features(classifier.module, train + val, prep, workers=2))
            scores = cross_validated(features, labels)
            split_score = probe().fit(features[:len(train)], labels[:len(train)]).score(
                features[len(train):], labels[len(train):])
            rows.append([model_name, f"{crop:g}", f"{np.mean(scores):.3f}", f"{np.std(scores):.3f}",
                         f"{min(scores):.3f} - {max(scores):.3f}", f"{split_score:.3f}"])
            print(rows[-1], f"{time.perf_counter() - start:.0f} s", flush=True)
    table = markdown_table(["model", "crop", f"{FOLDS}-fold accuracy (mean of {SHUFFLES} shuffles)", "std",
                            "folds min - max", "fit train/, score val/"], rows)
    write_readme_section("ceiling", f"`python benchmarks/train_ceiling.py` (linear probe on frozen features, "
                                    f"all 350 labelled flowers-mini photos; {machine()}).\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
