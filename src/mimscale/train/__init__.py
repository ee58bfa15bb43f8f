"""Pre-training: ``pretrain(cfg) -> summary`` (loop, schedules, optimizer groups, checkpoints, DDP)."""

from mimscale.errors import Interrupted, TrainingError
from mimscale.train.pretrain import build_simmim, pretrain, resolve_run_dir

__all__ = ["pretrain", "build_simmim", "resolve_run_dir", "Interrupted", "TrainingError"]
