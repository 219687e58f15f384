"""Training benchmark: the default recipe against the plain tutorial recipe, on the shared datasets.

Ours: `mobiclass.train` with defaults (stage 1 on cached features, then fine-tuning).
Reference: the Keras/PyTorch transfer-learning tutorial loop: the pretrained backbone frozen, the new
head trained for a few epochs with augmented images passing through the backbone every epoch.
Both run here, in one process, on the same data; the table goes into README.md.

    .venv/bin/python benchmarks/train_accuracy.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ASSETS, machine, markdown_table, write_readme_section  # noqa: E402

EXPECTED = Path(__file__).resolve().parents[1] / "mobiclass" / "studio" / "expected_accuracy.json"

from mobiclass import load_classifier  # noqa: E402
from mobiclass.data import Preprocessing  # noqa: E402
from mobiclass.data.dataset import scan_dataset  # noqa: E402
from mobiclass.data.loaders import Augmentation, ImageDataset  # noqa: E402
from mobiclass.evaluate import summary_metrics  # noqa: E402
from mobiclass.train import train  # noqa: E402


def tutorial_recipe(data: Path, model_name: str, epochs: int = 10, seed: int = 0) -> dict:
    """Frozen backbone, new linear head, augmented images through the whole network every epoch."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    dataset = scan_dataset(data, seed=seed)
    classifier = load_classifier(model_name, engine="torch")
    model = classifier.module
    model.reset_classifier(len(dataset.classes))
    prep = Preprocessing.for_size(224, mean=classifier.preprocessing.mean, std=classifier.preprocessing.std,
                                  interpolation=classifier.preprocessing.interpolation)
    model.requires_grad_(False)
    model.head_modules().requires_grad_(True)
    optimizer = torch.optim.Adam(model.head_modules().parameters(), lr=1e-3)
    train_set = ImageDataset(dataset.splits["train"], prep, Augmentation.preset("default"), seed=seed)
    images = 0
    for epoch in range(epochs):
        train_set.epoch = epoch
        model.eval()
        model.head_modules().train()
        for x, y in torch.utils.data.DataLoader(train_set, batch_size=32, shuffle=True, num_workers=2):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            images += len(y)
    model.eval()
    probabilities, labels = [], []
    with torch.inference_mode():
        for x, y in torch.utils.data.DataLoader(ImageDataset(dataset.splits["val"], prep), batch_size=32):
            probabilities.append(model(x).softmax(1).numpy())
            labels.append(y.numpy())
    seconds = time.perf_counter() - start
    return {"val": summary_metrics(np.concatenate(labels), np.concatenate(probabilities)), "seconds": seconds,
            "images_per_s": images / seconds}


def ours(data: Path, model_name: str, workdir: Path, **options) -> dict:
    start = time.perf_counter()
    result = train(data, workdir / f"{data.name}-{model_name}-{options.get('weights', 'pretrained')}",
                   model=model_name, progress=False, **options)
    return {**result.metrics, "seconds": time.perf_counter() - start}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer cases, for a smoke run")
    args = parser.parse_args()
    flowers, fruits = ASSETS / "datasets" / "flowers-mini", ASSETS / "datasets" / "fruits-mini"
    if not flowers.exists():
        print(f"shared datasets not found under {ASSETS}; set MOBICLASS_ASSETS", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="mobiclass-bench-"))
    os.environ["MOBICLASS_HOME"] = str(workdir / "cache")  # a cold feature cache: stage 1 is really measured
    rows, raw = [], []
    cases = [(flowers, "efficientnet_lite0", {}), (flowers, "mobilenet_v2", {}), (fruits, "efficientnet_lite0", {}),
             (flowers, "mobilenet_v2", {"weights": "none", "epochs": 15, "early_stopping": 0})]
    if args.quick:
        cases = cases[:1]
    try:
        for data, model_name, options in cases:
            result = ours(data, model_name, workdir, **options)
            label = f"{model_name}" + (" (from scratch)" if options.get("weights") == "none" else "")
            reference = tutorial_recipe(data, model_name) if not options else None
            raw.append({"data": data.name, "model": label, "ours": result, "tutorial": reference})
            rows.append([data.name, label, f"{result['val']['accuracy']:.3f}", f"{result['seconds']:.0f} s",
                         f"{result['head_images_per_s']:.0f}", f"{result['finetune_images_per_s'] or 0:.0f}",
                         f"{reference['val']['accuracy']:.3f}" if reference else "-",
                         f"{reference['seconds']:.0f} s" if reference else "-"])
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    table = markdown_table(["data", "model", "ours: val accuracy", "ours: time", "stage 1 img/s", "stage 2 img/s",
                            "tutorial recipe: val accuracy", "tutorial recipe: time"], rows)
    write_readme_section("train", f"Measured with `python benchmarks/train_accuracy.py` on {machine()}.\n\n{table}")
    if not args.quick:  # the studio's model cards show these figures
        expected = {"source": f"python benchmarks/train_accuracy.py on {machine()}", "accuracy": {}}
        for entry in raw:
            if "scratch" not in entry["model"]:
                expected["accuracy"].setdefault(entry["model"], {})[entry["data"]] = \
                    round(entry["ours"]["val"]["accuracy"], 3)
        EXPECTED.write_text(json.dumps(expected, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(raw, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
