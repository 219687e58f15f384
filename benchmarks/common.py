"""Helpers shared by the benchmark scripts: where the shared assets are, and writing tables into the README."""
from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch

from mobiclass.files import assets_dir

REPO = Path(__file__).resolve().parents[1]
ASSETS = assets_dir()


def shared_dataset(name: str = "flowers-mini") -> Path:
    """A dataset of the shared assets, or exit with status 2 saying where it was looked for."""
    folder = ASSETS / "datasets" / name
    if not folder.is_dir():
        raise SystemExit(f"{name} not found at {folder} (set MOBICLASS_ASSETS)")
    return folder


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, " \
           f"{torch.get_num_threads()} threads"


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_readme_section(name: str, text: str) -> None:
    """Replace the text between <!-- bench:NAME --> and <!-- /bench:NAME --> in the README."""
    readme = REPO / "README.md"
    content = readme.read_text(encoding="utf-8")
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{text.strip()}\n{end}"
    if start in content:
        content = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, content, flags=re.S)
    else:
        content += f"\n{block}\n"
    readme.write_text(content, encoding="utf-8")


def fold_manifests(data: Path, folds: int, work: Path) -> list[Path]:
    """One CSV per fold: every photo of flowers-mini (train/ and val/), each fold validating on a stratified 1/k."""
    from mobiclass.files import write_csv

    photos = sorted((p, p.parent.name) for p in data.glob("*/*/*") if p.is_file())
    by_class: dict[str, list[Path]] = {}
    for path, label in photos:
        by_class.setdefault(label, []).append(path)
    manifests = []
    for k in range(folds):
        rows = [[str(path), label, "val" if i % folds == k else "train"]
                for label, paths in by_class.items() for i, path in enumerate(paths)]
        manifests.append(write_csv(work / f"fold{k}.csv", ["path", "label", "split"], rows))
    return manifests


def cross_validation(description: str, name: str) -> tuple[int, Path, list[Path]]:
    """The set-up every cross-validation benchmark shares: its ``--folds K`` option, a fresh work folder with its own
    cache (no feature or export cached by another run), and one manifest per fold of flowers-mini."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--folds", type=int, default=3)
    folds = parser.parse_args().folds
    work = Path(tempfile.mkdtemp(prefix=f"mobiclass-{name}-"))
    os.environ["MOBICLASS_HOME"] = str(work / "cache")
    return folds, work, fold_manifests(shared_dataset("flowers-mini"), folds, work)


def validation_probabilities(run: Path, manifest: Path):
    """A run's calibrated class probabilities for a fold's validation photos, and their true labels (numpy)."""
    import numpy as np

    from mobiclass.data.dataset import scan_dataset
    from mobiclass.loading import load_classifier

    samples = scan_dataset(manifest, allow_outside=True).splits["val"]
    classifier = load_classifier(run, engine="torch", progress=False)
    probabilities = np.stack([p for _, p in classifier.predict_files([s.path for s in samples])])
    return probabilities, np.array([s.label for s in samples])
