"""What training tells the person watching: the data table, progress (a bar on a terminal, plain lines in a log),
one line per epoch, a summary.

Kept apart from the loops so that they stay readable and a quiet run (the tuner's trials) costs nothing.
"""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..data.dataset import Dataset
from ..progress import ProgressReport
from ..run_folder import BAD_FILES, DATA_REPORT


class TrainingReporter:
    """Console output of one training process (only the main one speaks under torchrun)."""

    def __init__(self, enabled: bool, listener=None):
        self.enabled, self.listener = enabled, listener
        self.console = Console(stderr=True, quiet=not enabled)

    def note(self, text: str) -> None:
        self.console.print(text)

    def dataset(self, dataset: Dataset, run_dir: Path, imbalance_ratio: float, class_balance: str) -> None:
        table = Table("class", *dataset.splits, title=f"{Path(dataset.root).name}: {dataset.split_origin}")
        for i, name in enumerate(dataset.classes):
            table.add_row(name, *(str(dataset.counts(split)[i]) for split in dataset.splits))
        self.console.print(table)
        if dataset.bad_files:
            self.note(f"[yellow]skipped {len(dataset.bad_files)} unusable file(s)[/yellow] (listed in "
                      f"{run_dir / BAD_FILES}), e.g. {dataset.bad_files[0]['path']}: {dataset.bad_files[0]['error']}")
        if dataset.duplicates:
            self.note(f"[yellow]{len(dataset.duplicates)} file(s) appear in more than one split[/yellow] (exact "
                      f"duplicates, listed in {DATA_REPORT}); validation figures may be optimistic")
        unmeasured = dataset.unvalidated()
        if unmeasured:
            self.note(f"[yellow]no validation photo[/yellow] for {', '.join(unmeasured)}: the validation figures "
                      f"say nothing about {'this class' if len(unmeasured) == 1 else 'these classes'}")
        if dataset.imbalance() > imbalance_ratio:
            self.note(f"[yellow]class imbalance[/yellow]: the largest class is {dataset.imbalance():.1f}x the "
                      f"smallest; class_balance={class_balance}")

    def progress(self, description: str, total: int, stats: bool = False) -> ProgressReport:
        return ProgressReport(description, total, self.console, self.enabled, stats=stats, listener=self.listener)

    def epoch(self, row: dict, improved: bool) -> None:
        marker = "[green]*[/green]" if improved else " "
        self.note(f"{marker} {row['stage']:8} epoch {row['epoch']:>2}: train loss {row['train_loss']:.3f} "
                  f"acc {row['train_accuracy']:.3f} | val loss {row['val_loss']:.3f} acc {row['val_accuracy']:.3f} "
                  f"macro-F1 {row['val_macro_f1']:.3f} | {row['images_per_s']:.0f} img/s, {row['seconds']:.1f} s")

    def summary(self, run_dir: Path, metrics: dict) -> None:
        self.note(metrics["ending"])
        table = Table("", "value", title=f"run {run_dir}")
        for name, value in [("best epoch", str(metrics["best_epoch"])),
                            *[(f"val {k}", f"{v:.4f}") for k, v in metrics["val"].items()],
                            ("head stage img/s", f"{metrics['head_images_per_s'] or 0:.0f}"),
                            ("fine-tuning img/s", f"{metrics['finetune_images_per_s'] or 0:.0f}"),
                            ("time", f"{metrics['train_seconds']:.0f} s")]:
            table.add_row(name, value)
        self.console.print(table)


def ending(best_epoch: int, epochs_run: int, epochs: int, stopped_early: bool, metric: str) -> str:
    """How training ended and which epoch's model was kept, in one sentence (epoch 0 is the head stage)."""
    kept = "the head-stage model (epoch 0: the new head on the frozen backbone)" if best_epoch == 0 else \
        f"epoch {best_epoch}"
    if epochs_run == 0:
        return "trained the new head only, without fine-tuning; kept it"
    if stopped_early:
        since = "the head stage" if best_epoch == 0 else f"epoch {best_epoch}"
        words = {"macro_f1": "macro-F1"}.get(metric, metric.replace("_", " "))
        return (f"stopped early at epoch {epochs_run} of {epochs}: no better validation {words} since {since}; "
                f"kept {kept}")
    return f"ran all {epochs} epochs; kept {kept}, the best on the validation photos"
