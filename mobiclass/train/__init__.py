"""Training: two-stage transfer learning and fine-tuning, checkpoints, resume."""
from .config import TrainConfig
from .trainer import TrainResult, resume, train

__all__ = ["TrainConfig", "TrainResult", "resume", "train"]
