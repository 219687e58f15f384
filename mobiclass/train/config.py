"""Training options: one dataclass, readable from YAML and the command line, written back to the run.

Each option is defined once, here: its default, type, choices and help text (field metadata). The command
line's flags are built from these fields, so the parser refuses what the config would refuse.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import UsageError
from ..files import read_yaml_mapping
from ..targets.catalog import TARGETS


def option(default, help: str, choices: tuple | None = None, kind: type | None = None):
    """A TrainConfig field with its help text, allowed values and type (when the default does not say it)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "kind": kind})


@dataclass
class TrainConfig:
    """Every training option with the default recipe (tuned for the best accuracy reachable on a CPU)."""

    data: str = option("", "a folder of class folders, a folder with train/ and val/, or a CSV manifest")
    out: str = option("", "the run folder to create")
    target: str = option("", "the hardware the model will run on (see mobiclass targets): picks its best recipe "
                             "that fits; model, width and image size given explicitly must fit it too")
    model: str = option("efficientnet_lite0", "architecture (see mobiclass models)")
    weights: str = option("imagenet", "pretrained name, a local file, or none (from scratch)")
    width_mult: float = option(1.0, "width multiplier (with weights none, or one the pretrained weights "
                                   "come in: MobileNetV1 0.25, 0.5, 0.75)")
    image_size: int = option(224, "input resolution, 96 to 224 typical")
    padding: str = option("auto", "padding of stride-2 convolutions: auto (the weights'), torch (symmetric) or tf "
                                  "(TensorFlow's SAME); pretrained weights are kept either way",
                          ("auto", "torch", "tf"))
    # 1.0 (the whole central square) beats ImageNet's 0.875 when the subject fills the photo: +2.5 points of
    # 5-fold accuracy on flowers-mini (benchmarks/train_ceiling.py).
    crop: float = option(1.0, "share of the shorter side the evaluation center crop keeps (0.875 is ImageNet's)")
    val_split: float = option(0.2, "validation fraction when DATA has no val/ split")
    seed: int = option(0, "seed of the split, initialisation, augmentation and order")
    workers: int = option(2, "data-loading processes")
    batch_size: int = option(32, "images per step")
    # The head stage: the new head on cached features of the frozen backbone.
    head_epochs: int = option(60, "epochs of the head on cached features (the head stage)")
    head_lr: float = option(3e-3, "learning rate of the head stage")
    feature_views: int = option(0, "augmented views cached per training image for the head stage")
    # The fine-tuning stage.
    epochs: int = option(8, "fine-tuning epochs")
    unfreeze: str = option("auto", "backbone blocks fine-tuned: auto (the last 8 with pretrained weights, all from "
                                    "scratch), all, none, or the last N")
    lr: float = option(1e-3, "learning rate of the head while fine-tuning")
    backbone_lr_mult: float = option(0.1, "backbone learning rate = lr x this")
    optimizer: str = option("adamw", "fine-tuning optimizer", ("adamw", "sgd"))
    weight_decay: float = option(0.01, "weight decay (not on biases and norms)")
    momentum: float = option(0.9, "SGD momentum")
    warmup_epochs: float = option(1.0, "epochs of linear warm-up before the cosine decay")
    label_smoothing: float = option(0.1, "label smoothing of the loss")
    dropout: float | None = option(None, "dropout before the head (default: the architecture's)", kind=float)
    cache_images: bool = option(True, "decode each training photo once into memory (at 1.5x the training size) "
                                      "instead of every epoch")
    # BatchNorm keeps its ImageNet statistics while fine-tuning: batch statistics of 32 photos of 5 classes
    # throw the pretrained head off (train accuracy 0.99 -> 0.72 in the first epoch), as Keras' recipe warns.
    freeze_bn: bool = option(True, "keep the pretrained BatchNorm statistics while fine-tuning (not from scratch)")
    augment: str = option("light", "training augmentation", ("none", "light", "default", "strong"))
    class_balance: str = option("auto", "compensate class imbalance", ("auto", "weights", "sampler", "none"))
    imbalance_ratio: float = option(3.0, "largest / smallest class count above which auto balances")
    early_stopping: int = option(4, "epochs without a better metric before stopping (0: never)")
    metric: str = option("macro_f1", "validation metric for the best model and early stopping",
                         ("accuracy", "macro_f1"))
    # Distillation: a small model taught by a bigger run (see train/distill.py).
    teacher: str = option("", "run folder of a bigger model whose softened answers the student learns from "
                              "(several, comma-separated: an ensemble)")
    unlabeled: str = option("", "a folder of photos without labels (or a text file listing them, relative paths "
                                "from its folder): taught by the teacher, or without one by self-training")
    self_training_rounds: int = option(4, "without a teacher: rounds in which the latest kept model labels the "
                                          "unlabeled photos and a new one learns from those it is most sure of, "
                                          "under the class it gave them")
    pseudo_label_step: float = option(0.2, "self-training: round k learns from the k x this share of the unlabeled "
                                           "photos the latest model is most confident about, as many per class")
    pseudo_label_confidence: float = option(0.5, "self-training: the calibrated confidence below which an "
                                                 "unlabeled photo is never learnt from")
    distill_weight: float = option(0.7, "share of the teacher's answers in the loss (the rest: the labels)")
    distill_temperature: float = option(2.0, "temperature that softens the teacher's and student's answers")
    calibrate: bool = option(True, "fit a temperature on the validation split so that confidence means what it "
                                   "says (stored with the model, applied by every engine and export)")
    allow_outside: bool = option(False, "let a CSV manifest's paths point outside the manifest's folder")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    precision: str = option("auto", "mixed precision: auto is bf16/fp16 autocast on GPU; on CPUs with AVX-512 "
                                    "BF16 or AMX, bf16 for MobileNetV1 and V2 (faster there) and fp32 for the others; "
                                    "else fp32",
                            ("auto", "fp32", "bf16", "fp16"))

    def __post_init__(self):
        self.validate()

    @staticmethod
    def kind(field: dataclasses.Field) -> type:
        return field.metadata["kind"] or type(field.default)

    def validate(self) -> None:
        for field in fields(self):
            choices = field.metadata["choices"]
            if choices and getattr(self, field.name) not in choices:
                raise UsageError(f"{field.name} must be one of {', '.join(choices)}, got {getattr(self, field.name)!r}")
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UsageError(f"{field.name} must be a finite number, got {value}")
        checks = [
            (32 <= self.image_size <= 1024, "image_size must be between 32 and 1024 (96 to 224 is typical)"),
            (0.5 <= self.crop <= 1, "crop must be between 0.5 and 1 (the share of the shorter side kept)"),
            (0 < self.val_split < 1, "val_split must be between 0 and 1"),
            (self.target in ("", *TARGETS), f"unknown target {self.target!r}; targets: {', '.join(TARGETS)}"),
            (self.batch_size >= 1 and self.epochs >= 0 and self.head_epochs >= 0 and self.workers >= 0,
             "batch_size must be at least 1; epochs, head_epochs and workers at least 0"),
            (self.lr > 0 and self.head_lr > 0 and self.backbone_lr_mult >= 0, "learning rates must be positive"),
            (self.unfreeze in ("auto", "all", "none") or self.unfreeze.isdigit(),
             "unfreeze must be 'auto', 'all', 'none' or a number of blocks"),
            (self.feature_views >= 0, "feature_views must be at least 0"),
            (self.early_stopping >= 0 and self.warmup_epochs >= 0, "early_stopping and warmup_epochs must be at "
                                                                   "least 0"),
            (self.dropout is None or 0 <= self.dropout < 1, "dropout must be at least 0 and below 1"),
            (re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device) is not None,
             f"device must be auto, cpu, mps, cuda or cuda:N, got {self.device!r}"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be at least 0 and below 1"),
            (self.self_training_rounds >= 1, "self_training_rounds must be at least 1"),
            (0 < self.pseudo_label_confidence < 1, "pseudo_label_confidence must be above 0 and below 1"),
            (0 < self.pseudo_label_step <= 1, "pseudo_label_step must be above 0 and at most 1"),
            (0 <= self.distill_weight <= 1, "distill_weight must be between 0 and 1"),
            (self.distill_temperature > 0, "distill_temperature must be positive"),
            (0 <= self.momentum < 1 and self.weight_decay >= 0, "momentum must be in [0, 1) and weight_decay at "
                                                                "least 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UsageError(f"unknown training option(s): {', '.join(unknown)}; known: {', '.join(known)}")
        converted = {}
        for name, value in values.items():
            kind = cls.kind(known[name])
            try:
                if value is not None:
                    value = _as_bool(value) if kind is bool else _as_number(value, kind) if kind in (int, float) \
                        else kind(value)
            except (TypeError, ValueError):
                raise UsageError(f"option {name} must be a {kind.__name__}, got {value!r}") from None
            converted[name] = value
        return cls(**converted)

    @classmethod
    def combined(cls, base: TrainConfig | str | Path | None, overrides: dict) -> TrainConfig:
        """`overrides` on top of a TrainConfig, of a YAML file's options, or of the defaults."""
        if isinstance(base, TrainConfig):
            return cls.from_dict({**base.to_dict(), **overrides})
        return cls.load(base, **overrides) if base is not None else cls.from_dict(overrides)

    @classmethod
    def load(cls, path: str | Path, **overrides) -> TrainConfig:
        """A YAML file's options, then `overrides` (options given on the command line) on top."""
        values = read_yaml_mapping(path, "config file")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _as_bool(value) -> bool:
    if isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    return bool(value)


def _as_number(value, kind: type):
    """int or float, refusing booleans (YAML's `epochs: true`) and fractional ints."""
    if isinstance(value, bool):
        raise TypeError(value)
    number = kind(value)
    if kind is int and isinstance(value, float) and value != number:
        raise ValueError(value)
    return number
