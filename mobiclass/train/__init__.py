"""Training: two-stage transfer learning and fine-tuning, checkpoints, resume.

`TrainConfig` needs no torch (the command line builds its flags from it); `train` and `resume` import the
trainer when first used.
"""
from .config import TrainConfig

__all__ = ["Seams", "TrainConfig", "TrainResult", "resume", "train"]


def __getattr__(name: str):
    if name in ("TrainResult", "resume", "train"):
        from . import trainer

        return getattr(trainer, name)
    if name == "Seams":
        from .loops import Seams

        return Seams
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
