"""Finding and checking a dataset before any training starts.

DATA is a folder with one sub-folder per class, a folder with ``train/`` and ``val/`` (and optionally
``test/``) each holding class folders, or a CSV manifest with ``path,label`` (and optionally
``split``) columns. Every file is read and decoded once: unusable files are listed and skipped,
exact duplicates across splits are flagged, and problems that make training meaningless are
errors that say what to fix.
"""
from __future__ import annotations

import csv
import hashlib
import os
import random
import statistics
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import ImageError, UsageError
from .images import IMAGE_EXTENSIONS, load_image
from .inputs import expand_inputs

SPLITS = ("train", "val", "test")
CLASS_FOLDERS = "class folders"  # listing key: every class folder found, images or not


@dataclass(frozen=True)
class Sample:
    path: str
    label: int


@dataclass
class Dataset:
    """The checked dataset: class names, usable samples per split, and what the scan found."""

    root: str
    classes: list[str]
    splits: dict[str, list[Sample]]
    split_origin: str
    bad_files: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    image_sizes: dict = field(default_factory=dict)

    def counts(self, split: str) -> list[int]:
        counter = Counter(s.label for s in self.splits.get(split, []))
        return [counter[i] for i in range(len(self.classes))]

    def imbalance(self) -> float:
        """Largest over smallest training class count."""
        counts = self.counts("train")
        return max(counts) / max(min(counts), 1)

    def unvalidated(self) -> list[str]:
        """Classes with no validation photo: the validation figures say nothing about them."""
        return [name for name, n in zip(self.classes, self.counts("val")) if n == 0]

    def report(self) -> dict:
        return {"root": self.root, "classes": self.classes, "split_origin": self.split_origin,
                "counts": {split: dict(zip(self.classes, self.counts(split))) for split in self.splits},
                "image_sizes": self.image_sizes, "bad_files": self.bad_files, "duplicates": self.duplicates,
                "classes_without_validation": self.unvalidated()}

    def split_manifest(self) -> dict:
        """The exact split, by path and class name, so a run can be reproduced or resumed."""
        return {split: [[s.path, self.classes[s.label]] for s in samples] for split, samples in self.splits.items()}


def scan_dataset(data: str | Path, val_split: float = 0.2, seed: int = 0, workers: int = 4,
                 saved_split: dict | None = None, allow_outside: bool = False) -> Dataset:
    """Find, decode and check every file of `data`; split train/val if the data does not.

    A manifest's paths must stay inside its folder unless `allow_outside`."""
    root = Path(data)
    if not root.exists():
        raise UsageError(f"data not found: {root}")
    if saved_split is not None:
        listed = {split: [(Path(p), label) for p, label in rows] for split, rows in saved_split.items()}
        origin = "saved split"
    elif root.is_file():
        listed, origin = _list_manifest(root, allow_outside)
    else:
        listed, origin = _list_folders(root)
    if "train" not in listed or not listed["train"]:
        raise UsageError(f"{root} holds no training images; expected one sub-folder of images per class, or "
                         f"train/ and val/ folders holding them, or a CSV manifest with path,label columns")

    entries = [(split, path, label) for split, items in listed.items() if split != CLASS_FOLDERS
               for path, label in items]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        checked = list(pool.map(_check_file, [path for _, path, _ in entries]))

    # A class folder with no image at all is still a class: it must be refused, not silently dropped.
    classes = sorted({label for _, _, label in entries} | set(listed.get(CLASS_FOLDERS, [])))
    index = {name: i for i, name in enumerate(classes)}
    splits: dict[str, list[Sample]] = defaultdict(list)
    bad_files, by_hash, sizes = [], defaultdict(list), []
    for (split, path, label), (digest, size, error) in zip(entries, checked):
        if error:
            bad_files.append({"path": str(path), "split": split, "class": label, "error": error})
            continue
        splits[split].append(Sample(str(path), index[label]))
        by_hash[digest].append((split, str(path)))
        sizes.append(size)
    splits = dict(splits)
    _check_classes(root, classes, splits)

    if "val" not in splits:
        splits["train"], splits["val"] = stratified_split(splits["train"], val_split, seed)
        origin = f"random stratified split of {val_split:.0%} (seed {seed})"
    if not splits["val"]:
        raise UsageError(f"{root} leaves no photo to validate on: give each class at least 2 photos (one to train "
                         f"on, one to validate), or a val/ folder", code="no_validation")
    duplicates = [{"paths": [p for _, p in group], "splits": sorted({s for s, _ in group})}
                  for group in by_hash.values() if len({s for s, _ in group}) > 1]
    return Dataset(str(root), classes, splits, origin, bad_files, duplicates, _size_summary(sizes))


def scan_unlabeled(folder: str | Path, workers: int = 4) -> tuple[list[str], list[dict]]:
    """The readable images under `folder` (recursively), or listed in the text file `folder` (one path a line, a
    relative one from the list's folder, as a CSV manifest's), and the unreadable ones, for photos without labels."""
    root = Path(folder)
    if root.is_file():
        try:
            lines = root.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the list of unlabeled photos {root}: it must be a text file, one path a "
                             f"line ({getattr(exc, 'strerror', None) or exc})") from None
        paths = [os.path.normpath(root.parent / line.strip()) for line in lines if line.strip()]
    elif root.is_dir():
        paths = expand_inputs([str(root)])
    else:
        raise UsageError(f"unlabeled photos not found: {root} is neither a folder nor a list of photos")
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        checked = list(pool.map(_check_file, map(Path, paths)))
    good = [p for p, (_, _, error) in zip(paths, checked) if not error]
    bad = [{"path": p, "split": "unlabeled", "error": e} for p, (_, _, e) in zip(paths, checked) if e]
    if not good and bad:
        where = (f"listed in {root} (a relative path is read from the list's folder)" if root.is_file()
                 else f"in {root}")
        raise UsageError(f"none of the {len(bad)} files {where} is a readable image, e.g. {bad[0]['path']}: "
                         f"{bad[0]['error']}")
    if not good:
        raise UsageError(f"{root} holds no readable image (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return good, bad


def scan_labelled_images(data: str | Path, split: str | None = None, workers: int = 4,
                         allow_outside: bool = False) -> tuple[list[tuple[str, str]], list[dict], str]:
    """One labelled set to evaluate on: ((path, class name) pairs, unusable files, the split used).

    `data` is a folder of class folders (all of it is used), a folder with split folders (`split`,
    else test/ if present, else val/), or a CSV manifest (the rows of `split` if it has a split column).
    """
    root = Path(data)
    if not root.exists():
        raise UsageError(f"data not found: {root}")
    listed, _ = _list_manifest(root, allow_outside) if root.is_file() else _list_folders(root)
    listed.pop(CLASS_FOLDERS, None)
    if len(listed) == 1 and split is None:
        (name, items), = listed.items()
        split = name if root.is_file() or (root / name).is_dir() else "all"
    else:
        split = split or ("test" if "test" in listed else "val")
        if split not in listed:
            raise UsageError(f"{root} has no {split} split (it has: {', '.join(listed)})", code="no_such_split")
        items = listed[split]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        checked = list(pool.map(_check_file, [p for p, _ in items]))
    good = [(str(path), label) for (path, label), (_, _, error) in zip(items, checked) if not error]
    bad = [{"path": str(path), "class": label, "error": error}
           for (path, label), (_, _, error) in zip(items, checked) if error]
    if not good:
        raise UsageError(f"{root} ({split}) holds no usable image")
    return good, bad, split


def _list_folders(root: Path) -> tuple[dict[str, list], str]:
    """Files by split, plus every class folder's name under CLASS_FOLDERS (empty folders included)."""
    if (root / "train").is_dir():
        folders = [split for split in SPLITS if (root / split).is_dir()]
        listed = {split: _class_folder_files(root / split) for split in folders}
        origin = "folders " + "/".join(listed)
    else:
        folders, listed, origin = [None], {"train": _class_folder_files(root)}, "one folder per class"
    listed[CLASS_FOLDERS] = sorted({d.name for split in folders for d in _class_dirs(root / split if split else root)})
    return listed, origin


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_folder_files(folder: Path) -> list[tuple[Path, str]]:
    class_dirs = _class_dirs(folder)
    if not class_dirs:
        raise UsageError(f"{folder} has no class folders: put the images of each class in a sub-folder named "
                         f"after the class (e.g. {folder}/daisy/001.jpg)")
    return [(path, class_dir.name) for class_dir in class_dirs for path in sorted(class_dir.rglob("*"))
            if (path.is_file() or path.is_symlink())  # a broken link is listed with its error, never dropped
            and not any(part.startswith(".") for part in path.relative_to(class_dir).parts)]


def _list_manifest(path: Path, allow_outside: bool = False) -> tuple[dict[str, list[tuple[Path, str]]], str]:
    """The rows of a CSV manifest by split; paths are relative to its folder and must stay in it unless
    `allow_outside`. A byte-order mark (as Excel writes) is accepted."""
    folder = path.parent.resolve()
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"cannot read the manifest {path}: {exc}") from None
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise UsageError(f"{path} must be a CSV with a header row naming 'path' and 'label' (and optionally 'split')")
    listed: dict[str, list[tuple[Path, str]]] = defaultdict(list)
    for line, row in enumerate(rows, start=2):
        split = (row.get("split") or "train").strip()
        if split not in SPLITS:
            raise UsageError(f"{path}, line {line}: split must be one of {', '.join(SPLITS)}, got {split!r}")
        if not (row["path"] or "").strip() or not (row["label"] or "").strip():
            raise UsageError(f"{path}, line {line}: empty path or label")
        file = path.parent / row["path"].strip()
        if not allow_outside and not file.resolve().is_relative_to(folder):
            raise UsageError(f"{path}, line {line}: {row['path'].strip()} is outside the manifest's folder {folder}",
                             code="manifest_outside")
        listed[split].append((file, row["label"].strip()))
    return dict(listed), "manifest" + (" splits" if "split" in rows[0] else "")


def _check_file(path: Path) -> tuple[str, tuple[int, int], str | None]:
    """(sha1 of the bytes, original size, error or None): the file is decoded once, in reduced size when possible;
    a file that is no image is refused from its header, before the rest of it is read."""
    try:
        load_image(path, min_size=64)
        with Image.open(path) as image:
            size = image.size  # the stored size: decoding above may have used draft mode
        digest = hashlib.sha1()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except ImageError as exc:
        return "", (0, 0), str(exc)
    except OSError as exc:
        return "", (0, 0), f"cannot read file ({exc.strerror or exc})"
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on hostile files; record, never crash
        return "", (0, 0), f"not a usable image ({type(exc).__name__})"
    return digest.hexdigest(), size, None


def _check_classes(root: Path, classes: list[str], splits: dict[str, list[Sample]]) -> None:
    if len(classes) < 2:
        raise UsageError(f"{root} has {len(classes)} class ({', '.join(classes) or 'none'}); "
                         "a classifier needs at least 2 classes, each in its own folder")
    train_counts = Counter(s.label for s in splits.get("train", []))
    empty = [name for i, name in enumerate(classes) if train_counts[i] == 0]
    if empty:
        raise UsageError(f"class(es) with no usable training image: {', '.join(empty)}; add images or remove "
                         f"the folder(s) (unreadable files are listed in the scan report)")


def stratified_split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Move `fraction` of each class (at least one image when a class has two or more) to validation."""
    by_class: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_class[sample.label].append(sample)
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by_class):
        items = sorted(by_class[label], key=lambda s: s.path)
        rng.shuffle(items)
        n_val = min(max(1, round(len(items) * fraction)), len(items) - 1) if len(items) > 1 else 0
        val += items[:n_val]
        train += items[n_val:]
    return train, val


def _size_summary(sizes: list[tuple[int, int]]) -> dict:
    if not sizes:
        return {}
    widths, heights = [w for w, _ in sizes], [h for _, h in sizes]
    return {"min": [min(widths), min(heights)], "median": [statistics.median(widths), statistics.median(heights)],
            "max": [max(widths), max(heights)]}
