"""``mobiclass doctor DATA``: what is wrong with a labelled photo set before it is trained on: suspected label
errors, duplicates (and leaks between train and val), outliers, odd files, class counts. It never changes the data;
``apply_fixes`` applies a reviewed fix list to a copy.

A validation photo is never proposed for removal: removing the hard ones would only raise the score. Its label may
be wrong (then it is proposed for relabelling, like any photo), and a duplicate that leaks is removed on the
training side."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from ..data.dataset import scan_dataset
from ..errors import UsageError
from ..files import atomic_write_text, write_csv
from . import checks
from ..runtime.embeddings import backbone, look_at
from .report import write_html

FIX_ACTIONS = ("keep", "move", "delete")


def doctor(data: str | os.PathLike, out: str | os.PathLike, model: str | None = None, folds: int = 5,
           workers: int = 2, progress: bool = False, allow_outside: bool = False) -> dict:
    """Check `data` (class folders, train/ and val/, or a manifest) and write `out`/issues.json, label_issues.csv,
    duplicates.csv, fix-list.csv (the proposals, to review) and report.html. Returns what issues.json holds."""
    dataset = scan_dataset(data, workers=workers, allow_outside=allow_outside)
    samples = [(split, s) for split in ("train", "val") for s in dataset.splits.get(split, [])]
    paths = [s.path for _, s in samples]
    splits = [split for split, _ in samples]
    labels = np.array([s.label for _, s in samples])
    classifier = backbone(model)
    seen = look_at(classifier, paths, with_classes=False, workers=workers, progress=progress,
                   what="doctor: looking at the photos")
    classes = dataset.classes
    suspects, ranking = [], []
    if min(Counter(labels.tolist()).values()) >= 2:
        probabilities = checks.out_of_fold_probabilities(seen.embeddings, labels, folds)
        flagged, ranked = checks.label_issues(labels, probabilities)

        def described(issue: dict) -> dict:
            i = issue["index"]
            return {"path": paths[i], "split": splits[i], "given": classes[labels[i]],
                    "suggested": classes[issue["suggested"]], "score": issue["score"]}
        suspects = [described(issue) for issue in flagged]
        ranking = [described(issue) for issue in ranked[:max(len(flagged), len(ranked) // 5)]]
    duplicates = checks.duplicate_groups(paths, splits, seen.embeddings)
    unusual = [{"path": paths[o["index"]], "split": splits[o["index"]], "class": classes[labels[o["index"]]],
                "similarity": o["similarity"], "fence": o["fence"]} for o in checks.outliers(seen.embeddings)]
    files = [{"path": p, "problems": found} for p in paths if (found := checks.image_problems(p))]
    counts = {split: dict(zip(classes, dataset.counts(split))) for split in ("train", "val")}
    result = {"data": str(data), "backbone": classifier.name, "photos": len(paths), "classes": classes,
              "counts": counts, "imbalance": round(dataset.imbalance(), 2), "label_issues": suspects,
              "label_ranking": ranking,
              "duplicates": duplicates, "outliers": unusual, "image_problems": files,
              "unreadable": dataset.bad_files, "fixes": _proposals(suspects, duplicates)}
    _write(Path(out), result)
    return result


def _proposals(suspects: list[dict], duplicates: list[dict]) -> list[dict]:
    """The fix list to review: move each suspected label error to its suggested class; of each duplicate group
    keep one copy, preferring the validation one, and delete the training copies (never a validation photo)."""
    fixes = [{"path": s["path"], "action": "move", "class": s["suggested"],
              "why": f"label {s['given']!r} looks wrong (score {s['score']:.2f})"} for s in suspects]
    moved = {s["path"] for s in suspects}
    for group in duplicates:
        paths, splits = group["paths"], group["splits"]
        copies = {n: set() for n in range(len(paths))}
        for i, j in group["pairs"]:
            copies[i].add(j)
            copies[j].add(i)
        kept = [n for n, split in enumerate(splits) if split != "train"]  # validation photos always stay
        for n in (n for n, split in enumerate(splits) if split == "train"):
            original = next((k for k in kept if k in copies[n]), None)
            if original is None or paths[n] in moved:
                kept.append(n)
                continue
            leak = " (it leaks into val)" if splits[original] != "train" else ""
            fixes.append({"path": paths[n], "action": "delete", "class": "",
                          "why": f"{group['kind']} copy of {paths[original]}{leak}"})
    return fixes


def _write(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "issues.json", json.dumps(result, indent=1) + "\n")
    write_csv(out / "label_issues.csv", ["path", "split", "given", "suggested", "score"],
              [[s[k] for k in ("path", "split", "given", "suggested", "score")] for s in result["label_issues"]])
    write_csv(out / "duplicates.csv", ["group", "path", "split", "kind", "leak"],
              [[n, p, s, g["kind"], g["leak"]] for n, g in enumerate(result["duplicates"], 1)
               for p, s in zip(g["paths"], g["splits"])])
    write_csv(out / "fix-list.csv", ["path", "action", "class", "why"],
              [[f["path"], f["action"], f["class"], f["why"]] for f in result["fixes"]])
    write_html(out / "report.html", result)


def apply_fixes(data: str | os.PathLike, fix_list: str | os.PathLike, fixed: str | os.PathLike) -> dict:
    """The dataset `data` with the reviewed fix list applied (rows: path, action keep|move|delete, class for a move),
    as a copy at `fixed`: of a folder of class folders, a new folder (files hard-linked where possible); of a CSV
    manifest, a new manifest beside it (the photos stay where they are). `data` is never touched."""
    source, target = Path(data), Path(fixed)
    if source.is_file():
        return _fix_manifest(source, fix_list, target)
    root = source.resolve()
    if not root.is_dir():
        raise UsageError(f"fixes apply to a folder of class folders (or train/ and val/) or a CSV manifest: {data} "
                         f"is neither", code="data_not_found")
    if target.exists() and any(target.iterdir()):
        raise UsageError(f"{fixed} exists and is not empty: the fixed copy needs a new folder", code="exists")
    files = {p for p in root.rglob("*") if p.is_file()}
    plan = _reviewed_plan(fix_list, data, files, {p.parent.name for p in files})  # not train/ or val/
    counts = Counter()
    with _atomic_folder(target) as tmp:
        for file in sorted(files):
            action, label = plan.get(file, ("keep", ""))
            relative = file.relative_to(root)
            if action == "delete":
                counts["deleted"] += 1
                continue
            if action == "move":
                relative = relative.parent.with_name(label) / relative.name
                counts["moved"] += 1
            destination = tmp / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(file, destination)
            except OSError:
                shutil.copy2(file, destination)
            counts["files"] += 1
    return {"fixed": str(target), "files": counts["files"], "moved": counts["moved"], "deleted": counts["deleted"]}


def _fix_manifest(manifest: Path, fix_list: str | os.PathLike, target: Path) -> dict:
    """A new manifest beside `manifest` (so that its relative paths still hold), every other column kept."""
    import csv

    if target.resolve().parent != manifest.resolve().parent or target.suffix.lower() != ".csv":
        raise UsageError(f"the fixed copy of a manifest is a new .csv beside it (its paths are read from its folder): "
                         f"for example --fixed {manifest.with_name(manifest.stem + '-fixed.csv')}")
    if target.exists():
        raise UsageError(f"{target} exists: the fixed manifest needs a new name", code="exists")
    with open(manifest, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        rows, header = list(reader), list(reader.fieldnames or ())
    if not {"path", "label"} <= set(header):
        raise UsageError(f"{manifest} must be a CSV with a header row naming 'path' and 'label'")
    where = [(manifest.parent / (row["path"] or "").strip()).resolve() for row in rows]
    plan = _reviewed_plan(fix_list, manifest, set(where), {(row["label"] or "").strip() for row in rows})
    kept, counts = [], Counter()
    for row, file in zip(rows, where):
        action, label = plan.get(file, ("keep", ""))
        counts[action] += 1
        if action != "delete":
            kept.append({**row, "label": label} if action == "move" else row)
    write_csv(target, header, [[row.get(column, "") for column in header] for row in kept])
    return {"fixed": str(target), "files": len(kept), "moved": counts["move"], "deleted": counts["delete"]}


def _reviewed_plan(fix_list: str | os.PathLike, data: str | os.PathLike, files: set[Path],
                   classes: set[str]) -> dict[Path, tuple[str, str]]:
    """{photo: (action, class)} of a reviewed fix list, every row checked against the dataset's `files` (resolved)
    and `classes`: a list that is not one, a photo no longer there, an unknown class are refused, not skipped."""
    import csv

    try:
        with open(fix_list, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows, columns = list(reader), set(reader.fieldnames or ())
    except OSError as exc:
        raise UsageError(f"cannot read the fix list {fix_list}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, csv.Error):
        columns = set()
    if not {"path", "action"} <= columns:
        raise UsageError(f"{fix_list} is not a fix list: it needs a CSV header with the columns path,action[,class] "
                         f"(as doctor's fix-list.csv has)")
    plan: dict[Path, tuple[str, str]] = {}
    for number, row in enumerate(rows, 2):
        action, path = (row.get("action") or "keep").strip(), Path(row.get("path") or "").resolve()
        if action not in FIX_ACTIONS:
            raise UsageError(f"{fix_list} line {number}: action must be keep, move or delete, got {action!r}")
        if path not in files:  # the data changed since the review: no reviewed decision is silently dropped
            raise UsageError(f"{fix_list} line {number}: {row['path']} is not in {data} (or no longer: run doctor "
                             f"again)")
        if action == "move" and (row.get("class") or "").strip() not in classes:
            raise UsageError(f"{fix_list} line {number}: move needs the class to move to, one of the dataset's "
                             f"classes; got {row.get('class')!r}")
        plan[path] = (action, (row.get("class") or "").strip())
    return plan


@contextlib.contextmanager
def _atomic_folder(path: Path):
    """A folder built beside `path` and renamed onto it when complete: an interrupted fix leaves no half copy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
