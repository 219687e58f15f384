"""Training options: one dataclass, readable from YAML and the command line, written back to the run."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from ..errors import UsageError

CLASS_BALANCE = ("auto", "weights", "sampler", "none")
AUGMENT = ("none", "light", "default", "strong")
OPTIMIZERS = ("adamw", "sgd")
METRICS = ("accuracy", "macro_f1")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Every training option with the default recipe (tuned for the best accuracy reachable on a CPU)."""

    data: str = ""
    out: str = ""
    model: str = "efficientnet_lite0"
    weights: str = "imagenet"  # pretrained name, a local file, or "none" to train from scratch
    width_mult: float = 1.0
    image_size: int = 224
    # Share of the shorter side the evaluation crop keeps. 1.0 (the whole central square) beats ImageNet's 0.875
    # when the subject fills the photo: +2.5 points of 5-fold accuracy on flowers-mini (benchmarks/train_ceiling.py).
    crop: float = 1.0
    val_split: float = 0.2
    seed: int = 0
    workers: int = 2
    batch_size: int = 32
    # stage 1: the head on cached features of the frozen backbone
    head_epochs: int = 60
    head_lr: float = 3e-3
    feature_views: int = 0  # augmented views cached per training image, besides the center crop
    # stage 2: fine-tuning
    epochs: int = 8
    unfreeze: str = "all"  # "all", "none", or a number of backbone blocks counted from the top
    lr: float = 1e-3  # the head's learning rate; the backbone gets lr * backbone_lr_mult
    backbone_lr_mult: float = 0.1
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    dropout: float | None = None  # None keeps the architecture's default
    # BatchNorm keeps its ImageNet statistics while fine-tuning: batch statistics of 32 photos of 5 classes
    # throw the pretrained head off (train accuracy 0.99 -> 0.72 in the first epoch), as Keras' recipe warns.
    freeze_bn: bool = True
    augment: str = "light"
    class_balance: str = "auto"
    imbalance_ratio: float = 3.0  # largest / smallest class count above which "auto" balances
    early_stopping: int = 4  # epochs without improvement of the metric before stopping (0: never)
    metric: str = "macro_f1"
    device: str = "auto"
    precision: str = "auto"  # mixed precision: bf16 (or fp16) autocast on GPU, fp32 on CPU

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.augment in AUGMENT, f"augment must be one of {', '.join(AUGMENT)}"),
            (self.class_balance in CLASS_BALANCE, f"class_balance must be one of {', '.join(CLASS_BALANCE)}"),
            (self.metric in METRICS, f"metric must be one of {', '.join(METRICS)}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (32 <= self.image_size <= 1024, "image_size must be between 32 and 1024 (96 to 224 is typical)"),
            (0.5 <= self.crop <= 1, "crop must be between 0.5 and 1 (the share of the shorter side kept)"),
            (0 < self.val_split < 1, "val_split must be between 0 and 1"),
            (self.batch_size >= 1 and self.epochs >= 0 and self.head_epochs >= 0 and self.workers >= 0,
             "batch_size must be at least 1; epochs, head_epochs and workers at least 0"),
            (self.lr > 0 and self.head_lr > 0 and self.backbone_lr_mult >= 0, "learning rates must be positive"),
            (self.unfreeze in ("all", "none") or self.unfreeze.isdigit(),
             "unfreeze must be 'all', 'none' or a number of blocks"),
            (self.feature_views >= 0, "feature_views must be at least 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(f"{message} (check the config or options)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UsageError(f"unknown training option(s): {', '.join(unknown)}; known: {', '.join(known)}")
        converted = {}
        for name, value in values.items():
            kind = float if name == "dropout" else type(known[name].default)
            try:
                if value is not None:
                    value = _as_bool(value) if kind is bool else kind(value)
            except (TypeError, ValueError):
                raise UsageError(f"option {name} must be a {kind.__name__}, got {value!r}") from None
            converted[name] = value
        return cls(**converted)

    @classmethod
    def load(cls, path: str | Path, **overrides) -> "TrainConfig":
        """A YAML file's options, then `overrides` (options given on the command line) on top."""
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"config file not found: {path}")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise UsageError(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(values, dict):
            raise UsageError(f"{path} must hold a mapping of option: value")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _as_bool(value) -> bool:
    if isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    return bool(value)
