"""The run folder: the unit every command consumes. This module alone knows its file names and formats.

A run folder holds ``model.safetensors`` (the best weights, with their metadata) and ``model.json`` (the
same, readable, plus training config and metrics); a training run adds its history, split, data report
and resumable state, and commands write their outputs into sub-folders (``export/``, ``evaluation/``).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path

from .errors import UsageError, WeightsError
from .files import atomic_path, atomic_write_text, write_csv
from .version import __version__

WEIGHTS, MANIFEST, LAST_WEIGHTS = "model.safetensors", "model.json", "last.safetensors"
STATE, CONFIG, SPLIT = "state.pt", "config.yaml", "split.json"
DATA_REPORT, BAD_FILES = "data_report.json", "bad_files.csv"
HISTORY_CSV, HISTORY_JSONL, METRICS = "metrics.csv", "metrics.jsonl", "metrics.json"
BAD_FILE_COLUMNS = ["path", "split", "class", "error"]


def is_run_folder(path: str | os.PathLike) -> bool:
    """A folder written by training or :meth:`RunFolder.save_model` (finished or still training)."""
    path = Path(path)
    return path.is_dir() and ((path / MANIFEST).is_file() or (path / CONFIG).is_file())


def provisional_manifest(path: str | os.PathLike | None) -> dict | None:
    """The manifest of a run folder whose training has not ended (still running, or interrupted); None for
    anything else."""
    if path is None or not is_run_folder(path):
        return None
    try:
        manifest = _read_json(Path(path) / MANIFEST)
    except WeightsError:
        return None  # loading the model says what is wrong with it
    return manifest if manifest.get("provisional") else None


def provisional_note(path: str | os.PathLike | None) -> str | None:
    """What to tell whoever uses the model of a run folder whose training has not ended: it is the best model so
    far, and the final one replaces it. None for anything else."""
    manifest = provisional_manifest(path)
    if manifest is None:
        return None
    where = "the head stage" if manifest.get("stage") == "head" else f"fine-tuning epoch {manifest.get('best_epoch')}"
    accuracy = manifest.get("metrics", {}).get("accuracy")
    figure = f", val accuracy {accuracy:.3f}" if isinstance(accuracy, float) else ""
    return (f"{path} is still training (or its training was interrupted): using its best model so far, provisional "
            f"({where}{figure}); the final model replaces it when training ends")


def next_run_folder(base: str | os.PathLike = Path("runs") / "train") -> Path:
    """The first of ``runs/train``, ``runs/train2``, ``runs/train3``, ... that does not exist yet (as Ultralytics
    numbers its runs)."""
    base = Path(base)
    number = 1
    while (candidate := base if number == 1 else base.with_name(f"{base.name}{number}")).exists():
        number += 1
    return candidate


def default_output(model: str | os.PathLike, kind: str) -> Path:
    """Where a command writes for `model` unless told: ``RUN/kind`` for a run folder, else ``kind-NAME``."""
    return Path(model) / kind if is_run_folder(model) else Path(f"{kind}-{Path(model).name}")


class RunFolder:
    """Reading and writing one run folder; every write is atomic."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def check_new(self, overwrite: bool = False) -> None:
        """Refuse now what :meth:`create` would refuse, before any long work starts."""
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            if not overwrite:
                raise UsageError(f"{self.path} already exists", code="run_exists", run=str(self.path))
            if not is_run_folder(self.path):
                raise UsageError(f"{self.path} exists and is not a run folder; only run folders are replaced")

    def create(self, overwrite: bool = False) -> RunFolder:
        """Make the folder; an existing run is replaced only with `overwrite`, and nothing else ever is."""
        self.check_new(overwrite)
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    # -- the model ------------------------------------------------------------------------------------

    def save_model(self, weights, extra: dict | None = None) -> Path:
        """Write `weights` (a :class:`~mobiclass.weights.Weights`) as the run's model; `extra` (training config,
        metrics) goes into model.json."""
        import torch

        from .weights import save_weights_file

        save_weights_file(weights, self / WEIGHTS)
        manifest = {"format": "mobiclass-run", "format_version": 1, **weights.metadata(),
                    "num_classes": len(weights.classes),
                    "versions": {"mobiclass": __version__, "torch": torch.__version__,
                                 "python": platform.python_version()},
                    **(extra or {})}
        atomic_write_text(self / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        return self.path

    def save_last(self, weights) -> None:
        from .weights import save_weights_file

        save_weights_file(weights, self / LAST_WEIGHTS)

    def check_weights(self) -> None:
        """Refuse a damaged model.safetensors or last.safetensors (a truncated copy, a full disk)."""
        from .weights import load_weights_file

        for name in (WEIGHTS, LAST_WEIGHTS):
            if not (self / name).is_file():
                raise WeightsError(f"{self / name} is missing; the run cannot resume without it")
            load_weights_file(self / name)

    def load_weights(self):
        """The run's best weights, checked against model.json."""
        from .weights import load_weights_file

        if not self.path.exists():
            raise UsageError(f"no such model or run folder: {self.path}")
        if not (self / MANIFEST).is_file() or not (self / WEIGHTS).is_file():
            raise UsageError(f"{self.path} is not a run folder: it needs {WEIGHTS} and {MANIFEST}")
        try:
            manifest = json.loads((self / MANIFEST).read_text(encoding="utf-8"))
            return load_weights_file(self / WEIGHTS, manifest["architecture"], manifest.get("width_mult"))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise WeightsError(f"{self / MANIFEST} is damaged ({exc}); retrain or restore the run folder") from None

    # -- training records -----------------------------------------------------------------------------

    def write_config(self, text: str) -> None:
        atomic_write_text(self / CONFIG, text)

    def read_split(self) -> dict | None:
        """The saved split (a resumed run, an export's verification images), or None."""
        path = self / SPLIT
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def write_split(self, split: dict) -> None:
        atomic_write_text(self / SPLIT, json.dumps(split, indent=1) + "\n")

    def read_manifest(self) -> dict:
        """model.json: architecture, classes, preprocessing, training config, metrics."""
        return _read_json(self / MANIFEST)

    def read_data_report(self) -> dict:
        """data_report.json: image counts per split and class, sizes, duplicates (empty before training wrote it)."""
        return _read_json(self / DATA_REPORT)

    def write_data_report(self, report: dict, bad_files: list[dict]) -> None:
        atomic_write_text(self / DATA_REPORT, json.dumps(report, indent=2) + "\n")
        write_csv(self / BAD_FILES, BAD_FILE_COLUMNS, bad_files)

    def write_history(self, rows: list[dict]) -> None:
        """Per-epoch rows as metrics.csv (for people) and metrics.jsonl (for programs)."""
        write_csv(self / HISTORY_CSV, list(dict.fromkeys(k for row in rows for k in row)), rows)
        atomic_write_text(self / HISTORY_JSONL, "".join(json.dumps(r) + "\n" for r in rows))

    def read_history(self) -> list[dict]:
        path = self / HISTORY_JSONL
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def write_metrics(self, metrics: dict) -> None:
        atomic_write_text(self / METRICS, json.dumps(metrics, indent=2) + "\n")

    def write_state(self, state: dict) -> None:
        """The resumable training state (optimizer, scheduler, RNG, history)."""
        import torch

        with atomic_path(self / STATE) as tmp:
            torch.save(state, tmp)

    def read_state(self) -> dict | None:
        """The saved training state (tensors and plain values only: weights_only), or None before the first
        epoch ended."""
        import torch

        path = self / STATE
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged archive raises several types
            raise WeightsError(f"{path} is damaged ({str(exc).splitlines()[0][:200]}); the run cannot resume "
                               f"from it") from None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path} is damaged ({exc})") from None
