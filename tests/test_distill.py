"""Distillation: a small model taught by a bigger run beats its plainly trained twin when the teacher knows more,
photos without labels count, and every option is checked before any work."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import QUICK, draw_shapes

from mobiclass import UsageError
from mobiclass.data import Preprocessing
from mobiclass.train import train
from mobiclass.train.distill import distillation_loss


@pytest.fixture(scope="module")
def lesson(tmp_path_factory):
    """A teacher trained on 40 photos per class; a student task with 1 labelled photo per class, 30 per class to
    validate on, and the teacher's 120 photos without their labels."""
    root = tmp_path_factory.mktemp("lesson")
    big = draw_shapes(root / "big", per_class=40, seed=0)
    draw_shapes(root / "small" / "train", per_class=1, seed=1)
    draw_shapes(root / "small" / "val", per_class=30, seed=2)
    (root / "unlabeled").mkdir()
    for photo in big.rglob("*.png"):
        shutil.copy(photo, root / "unlabeled" / photo.name)
    teacher = train(big, root / "teacher", **QUICK)
    return root, teacher


def test_a_taught_student_beats_its_plainly_trained_twin(lesson):
    root, teacher = lesson
    student = {**QUICK, "model": "mobilenet_v2"}
    plain = train(root / "small", root / "plain", **student)
    taught = train(root / "small", root / "taught", **student, teacher=str(teacher.run_dir),
                   unlabeled=str(root / "unlabeled"))
    assert taught.metrics["distillation"] == {"teacher": str(teacher.run_dir), "unlabeled_images": 120}
    assert "distillation" not in plain.metrics
    # 1 labelled photo per class: 0.70 alone; the teacher's answers on 120 more photos: 1.00 (measured here).
    assert taught.metrics["val"]["accuracy"] >= plain.metrics["val"]["accuracy"] + 0.15, \
        (taught.metrics["val"], plain.metrics["val"])


def test_unreadable_unlabeled_photos_are_reported_and_skipped(lesson, tmp_path):
    root, teacher = lesson
    unlabeled = tmp_path / "unlabeled"
    unlabeled.mkdir()
    for photo in sorted((root / "unlabeled").iterdir())[:6]:
        shutil.copy(photo, unlabeled / photo.name)
    (unlabeled / "broken.png").write_bytes(b"not a photo")
    result = train(root / "small", tmp_path / "run", **{**QUICK, "epochs": 1}, teacher=str(teacher.run_dir),
                   unlabeled=str(unlabeled))
    assert result.metrics["distillation"]["unlabeled_images"] == 6
    report = (result.run_dir / "data_report.json").read_text()
    assert "broken.png" in report and '"split": "unlabeled"' in report


def test_the_loss_follows_the_teacher_on_unlabeled_images():
    hard = torch.nn.CrossEntropyLoss()
    loss = distillation_loss(hard, temperature=2.0, weight=0.5)
    teacher = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    agreeing = torch.log(teacher) * 2.0  # the student's logits whose softmax at T=2 is the teacher's answer
    unlabeled = torch.tensor([-1, -1])
    assert loss(agreeing, unlabeled, teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(-agreeing, unlabeled, teacher).item() > 0.5
    labelled = torch.tensor([0, 1])
    assert loss(agreeing, labelled, teacher).item() == pytest.approx(0.5 * hard(agreeing, labelled).item(), rel=1e-5)


def test_a_teacher_of_other_classes_is_refused(lesson, tmp_path):
    root, teacher = lesson
    other = draw_shapes(tmp_path / "other", per_class=4, classes=("circle", "square", "star"))
    with pytest.raises(UsageError, match=r"the teacher .* knows the classes circle, square, triangle, but the data "
                                         r"has circle, square, star: a teacher must be trained on the same classes"):
        train(other, tmp_path / "run", **QUICK, teacher=str(teacher.run_dir))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, message", [
    (["--unlabeled", "{root}/unlabeled", "--pseudo-label-confidence", "1"],
     "pseudo_label_confidence must be above 0 and below 1"),
    (["--unlabeled", "{root}/unlabeled", "--pseudo-label-step", "1.5"],
     "pseudo_label_step must be above 0 and at most 1"),
    (["--teacher", "{root}/teacher", "--distill-weight", "1.5"], "distill_weight must be between 0 and 1"),
    (["--teacher", "{root}/teacher", "--distill-temperature", "0"], "distill_temperature must be positive"),
    (["--teacher", "{root}/no-such-run"], "no such model or run folder: {root}/no-such-run"),
    (["--teacher", "{root}/teacher", "--unlabeled", "{root}/missing"],
     "unlabeled photos not found: {root}/missing is neither a folder nor a list of photos"),
])
def test_distillation_options_are_checked_with_a_clear_error(lesson, tmp_path, flags, message):
    root, _ = lesson
    done = subprocess.run([sys.executable, "-m", "mobiclass", "train", str(root / "small"), "--out",
                           str(tmp_path / "run"), "--epochs", "0", "--image-size", "64",
                           *(f.format(root=root) for f in flags)],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
    assert done.returncode == 2, done.stderr
    assert f"error: {message.format(root=root)}" in done.stderr
    assert not (tmp_path / "run").exists()
    assert "Traceback" not in done.stderr


def test_the_teacher_sees_what_the_student_sees_in_its_own_normalisation():
    from mobiclass.train.distill import Teacher

    student = Preprocessing.for_size(64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    ramp = torch.linspace(0, 1, 64)
    pixels = torch.stack([ramp.view(1, 64).expand(64, 64), ramp.view(64, 1).expand(64, 64),
                          torch.full((64, 64), 0.3)]).unsqueeze(0)  # smooth: resampling keeps it
    batch = (pixels - 0.5) / 0.5
    for teacher, size in ((Preprocessing.for_size(64), 64), (Preprocessing.for_size(96), 96)):  # ImageNet mean, std
        converted = Teacher._as_input_of(type("T", (), {"_student": student})(), batch, teacher)
        mean, std = torch.tensor(teacher.mean).view(1, 3, 1, 1), torch.tensor(teacher.std).view(1, 3, 1, 1)
        assert converted.shape == (1, 3, size, size)
        restored = torch.nn.functional.interpolate(converted * std + mean, size=(64, 64), mode="bilinear",
                                                   antialias=True)
        assert (restored - pixels).abs().max() < 0.02, size
