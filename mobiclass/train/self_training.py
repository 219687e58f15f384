"""Self-training: ``train DATA --unlabeled POOL`` without a teacher. A first model learns from the labelled photos
alone; then, round after round, the best model so far labels the pool with its calibrated confidence, and a new
model learns from the labelled photos plus the pool's confident photos, taught by that model's soft answers (the
distillation path, train/distill.py). A round is kept only when the validation metric improves; the first that does
not ends it. The run folder OUT holds the kept model; each round is a run folder of its own under
OUT/self-training/, so an interrupted self-training resumes where it stopped."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

from ..data.dataset import scan_unlabeled
from ..files import atomic_write_text
from ..run_folder import RunFolder
from .config import TrainConfig

KEPT_FILES = ("model.safetensors", "model.json", "metrics.json", "metrics.csv", "metrics.jsonl", "split.json",
              "config.yaml", "data_report.json", "bad_files.csv")


def self_train(config: TrainConfig, run_round: Callable) -> object:
    """Train `config` (whose ``unlabeled`` is set and ``teacher`` is not) by self-training into ``config.out``;
    `run_round(config, folder, resume)` trains (or resumes) one round and returns its TrainResult."""
    out = Path(config.out)
    rounds = out / "self-training"
    pool, unreadable = scan_unlabeled(config.unlabeled, max(2, config.workers))
    metric = config.metric
    labelled = TrainConfig.from_dict({**config.to_dict(), "unlabeled": "", "out": str(rounds / "round-0")})
    best = _round(labelled, run_round)
    history = [{"round": 0, "pseudo_labelled": 0, f"val_{metric}": best.metrics["val"][metric], "kept": True}]
    for number in range(1, config.self_training_rounds + 1):
        confident = _confident(best.run_dir, pool, config.pseudo_label_confidence, config.workers)
        if not confident:
            history.append({"round": number, "pseudo_labelled": 0, "stopped": "no unlabeled photo is confident "
                                                                               "enough"})
            break
        listing = rounds / f"pool-{number}.txt"
        atomic_write_text(listing, "\n".join(confident) + "\n")
        taught = TrainConfig.from_dict({**config.to_dict(), "unlabeled": str(listing), "teacher": str(best.run_dir),
                                        "out": str(rounds / f"round-{number}")})
        result = _round(taught, run_round)
        better = result.metrics["val"][metric] > best.metrics["val"][metric]
        history.append({"round": number, "pseudo_labelled": len(confident),
                        f"val_{metric}": result.metrics["val"][metric], "kept": better})
        if not better:
            break
        best = result
    summary = {"rounds": history, "kept_round": max(r["round"] for r in history if r.get("kept")),
               "pool": len(pool), "unreadable": len(unreadable), "confidence": config.pseudo_label_confidence}
    _keep(best.run_dir, out, summary)
    best.metrics["self_training"] = summary
    return type(best)(out, best.metrics, best.history)


def _round(config: TrainConfig, run_round: Callable):
    """One round's run: reused when it finished, resumed when it was interrupted, else trained."""
    folder = Path(config.out)
    if (folder / "metrics.json").is_file() and (folder / "model.safetensors").is_file():
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
                   if line.strip()]
        from .trainer import TrainResult

        return TrainResult(folder, metrics, history)
    return run_round(config, folder, (folder / "state.pt").is_file())


def _confident(run_dir: Path, pool: list[str], threshold: float, workers: int) -> list[str]:
    """The pool's photos the model labels with at least `threshold` calibrated confidence."""
    from ..runtime.embeddings import backbone, look_at

    seen = look_at(backbone(str(run_dir)), pool, with_classes=True, workers=workers)
    return [path for path, p in zip(pool, seen.probabilities) if p.max() >= threshold]


def _keep(chosen: Path, out: Path, summary: dict) -> None:
    """The kept round's model and records become OUT's, so that OUT is the run folder to use."""
    run = RunFolder(out)
    for name in KEPT_FILES:
        if (chosen / name).is_file():
            shutil.copy2(chosen / name, out / name)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    run.write_metrics({**metrics, "self_training": summary})
    atomic_write_text(out / "self_training.json", json.dumps(summary, indent=1) + "\n")
