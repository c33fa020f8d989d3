"""Training and fine-tuning loops, checkpoints and distributed training."""

from musegpt.train.config import TrainConfig, load_config
from musegpt.train.trainer import ModelAdapter, Trainer, TrainingDiverged, TrainResult

__all__ = [
    "ModelAdapter",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "load_config",
]
