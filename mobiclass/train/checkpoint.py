"""The checkpoint saver (as in timm's train.py): one object owns the run's best and last weights, its history
and its resumable state, and decides what counts as an improvement and when to stop early.

The best model so far is usable while training runs: model.json says ``"provisional": true`` with its stage, epoch
and validation figures, and its temperature is fitted on that epoch's validation answers, so that its confidence
means something already. The end of training settles it (train/calibration.py)."""
from __future__ import annotations

import math

from ..run_folder import RunFolder


class CheckpointSaver:
    """Best weights (``model.safetensors``), last weights, metrics history and ``state.pt`` of one run."""

    def __init__(self, run: RunFolder, metric: str, patience: int, state: dict | None = None):
        self.run, self.metric, self.patience = run, metric, patience
        self.history: list[dict] = list(state["history"]) if state else []
        self.best = state["best"] if state else -math.inf
        self.best_epoch = state["best_epoch"] if state else -1
        self.stale_epochs = state["stale_epochs"] if state else 0

    def record(self, row: dict) -> tuple[bool, bool]:
        """Add an epoch's row; (whether it is the best so far, whether training should stop)."""
        self.history.append(row)
        value = row[f"val_{self.metric}"]
        improved = value > self.best + 1e-12
        if improved:
            self.best, self.best_epoch, self.stale_epochs = value, row["epoch"], 0
        elif row["stage"] == "finetune":
            self.stale_epochs += 1
        return improved, bool(self.patience) and self.stale_epochs >= self.patience

    def save(self, row: dict, improved: bool, stop: bool, weights, training_state: dict, training: dict,
             validation=None) -> None:
        """Write the epoch: best weights when it improved (the provisional model), last weights, history and the
        resumable state. `validation` (labels and logits) calibrates the provisional model."""
        if improved:
            if validation is not None and training.get("calibrate", True) and len(validation.labels):
                from ..evaluate.metrics import fit_temperature

                weights = weights.with_temperature(fit_temperature(validation.logits, validation.labels))
            self.run.save_model(weights, {"training": training, "metrics": val_metrics(row),
                                          "best_epoch": row["epoch"], "provisional": True, "stage": row["stage"]})
        self.run.save_last(weights)
        self.run.write_history(self.history)
        self.run.write_state({**training_state, "epoch": row["epoch"], "best": self.best,
                              "best_epoch": self.best_epoch, "stale_epochs": self.stale_epochs,
                              "history": self.history, "stopped": stop})

    def share(self, distributed) -> None:
        """Every process continues from the main process's history and best score (after the head stage)."""
        self.history, self.best, self.best_epoch = distributed.broadcast((self.history, self.best, self.best_epoch))

    @property
    def best_row(self) -> dict:
        return next(r for r in self.history if r["epoch"] == self.best_epoch)


def val_metrics(row: dict) -> dict:
    return {"accuracy": row["val_accuracy"], "macro_f1": row["val_macro_f1"], "loss": row["val_loss"]}
