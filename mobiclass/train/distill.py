"""Knowledge distillation: a small, board-friendly model learns from a bigger run's softened answers.

The teacher (one run folder, or several whose answers are averaged) answers with its calibrated confidence, softened
at temperature T, and sees exactly the images the student sees:
the cached centre crops and views of the head stage (its answers are cached like features), and every
augmented batch of fine-tuning ("consistent teaching", Beyer et al. 2022). The loss mixes the KL divergence to
the teacher's answers at temperature T (scaled by T², as Hinton et al. do) with the usual cross-entropy on the
labels; photos without labels (``--unlabeled``) are taught by the teacher alone.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Preprocessing
from ..data.dataset import Sample, scan_unlabeled
from ..errors import UsageError
from ..runtime import load_torch_classifier
from .config import TrainConfig

UNLABELED = -1  # the label of a photo the teacher alone teaches


class Teacher(nn.Module):
    """The teacher's averaged probabilities at temperature T for batches prepared for the student.

    It is a :class:`~mobiclass.data.features.FeatureSource`: the head stage caches its answers for the very views
    it caches the student's features of."""

    def __init__(self, runs: list[str], classes: list[str], student: Preprocessing, temperature: float,
                 device: torch.device):
        super().__init__()
        loaded = [load_torch_classifier(run, progress=False) for run in runs]
        for run, teacher in zip(runs, loaded):
            if teacher.classes != list(classes):
                raise UsageError(f"the teacher {run} knows the classes {', '.join(teacher.classes)}, but the data "
                                 f"has {', '.join(classes)}: a teacher must be trained on the same classes",
                                 code="teacher_classes")
        self.members = nn.ModuleList(t.module.eval().to(device) for t in loaded)
        self.preprocessing = [t.preprocessing for t in loaded]
        # Each teacher's calibrated temperature first: label smoothing flattens a teacher's logits (its fitted
        # temperature is about 0.6), and at T=2 on top its answers would say almost nothing.
        self.temperatures = [t.temperature * temperature for t in loaded]
        self.requires_grad_(False)
        self._student = student
        self._fingerprint = hashlib.sha1(repr((
            [m.fingerprint() for m in self.members], [p.to_dict() for p in self.preprocessing], self.temperatures,
            student.to_dict())).encode()).hexdigest()

    def feature_key(self) -> str:
        return self._fingerprint

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)  # a teacher never changes: dropout off, BatchNorm statistics kept

    @torch.no_grad()  # not inference mode: the answers enter the student's loss, which autograd differentiates
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        answers = [F.softmax(member(self._as_input_of(batch, prep)).float() / temperature, dim=1)
                   for member, prep, temperature in zip(self.members, self.preprocessing, self.temperatures)]
        return torch.stack(answers).mean(0)

    def forward_features(self, batch: torch.Tensor) -> torch.Tensor:
        """Its answers are what the feature cache keeps for it."""
        return self(batch)

    def _as_input_of(self, batch: torch.Tensor, target: Preprocessing) -> torch.Tensor:
        """A batch normalised for the student, renormalised (and resized) for one teacher."""
        student = self._student

        def column(values):
            return torch.tensor(values, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)

        pixels = batch * column(student.std) + column(student.mean)
        batch = (pixels - column(target.mean)) / column(target.std)
        if target.size != student.size:
            batch = F.interpolate(batch, size=(target.size, target.size), mode="bilinear", antialias=True,
                                  align_corners=False)
        return batch.contiguous(memory_format=torch.channels_last)


def teacher_runs(config: TrainConfig) -> list[str]:
    return [part.strip() for part in config.teacher.split(",") if part.strip()]


def load_teacher(config: TrainConfig, classes: list[str], student: Preprocessing,
                 device: torch.device) -> Teacher | None:
    runs = teacher_runs(config)
    return Teacher(runs, classes, student, config.distill_temperature, device) if runs else None


def unlabeled_samples(config: TrainConfig, labelled: Iterable[Sample], workers: int) -> tuple[list[Sample], list]:
    """The readable photos of ``--unlabeled`` (labelled photos found there again are left out), and the bad ones."""
    if not config.unlabeled:
        return [], []
    known = {Path(s.path).resolve() for s in labelled}
    paths, bad_files = scan_unlabeled(config.unlabeled, workers)
    return [Sample(p, UNLABELED) for p in paths if Path(p).resolve() not in known], bad_files


def distillation_loss(hard: Callable, temperature: float, weight: float) -> Callable:
    """`weight` x T² x KL(teacher || student at T) + (1 - `weight`) x `hard` on the labelled images."""
    def loss(logits: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        taught = F.kl_div(F.log_softmax(logits / temperature, dim=1), soft, reduction="batchmean")
        known = labels != UNLABELED
        labelled = hard(logits[known], labels[known]) if bool(known.any()) else logits.new_zeros(())
        return weight * temperature ** 2 * taught + (1 - weight) * labelled
    return loss


def with_teacher(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], teacher: Teacher, autocast: Callable):
    """(images, labels, the teacher's answers) for each batch."""
    for images, labels in batches:
        with autocast():
            soft = teacher(images)
        yield images, labels, soft.float()
