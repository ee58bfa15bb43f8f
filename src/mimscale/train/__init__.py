"""SimMIM pre-training: ``pretrain(cfg) -> summary`` (the run's data, loop, validation, reconstructions, shared
prefixes, summary) on the training engine of ``mimscale.engine``.

Names are imported on first use, so torch-free modules of this package (``schedule``, ``prefix``) serve
the study planner without importing torch.
"""

from __future__ import annotations

import importlib

from mimscale.errors import Interrupted, TrainingError

__all__ = ["pretrain", "build_simmim", "resolve_run_dir", "Interrupted", "TrainingError"]


def __getattr__(name: str):
    if name in ("pretrain", "resolve_run_dir"):
        return getattr(importlib.import_module("mimscale.train.loop"), name)
    if name == "build_simmim":
        return importlib.import_module("mimscale.train.setup").build_simmim
    raise AttributeError(f"module 'mimscale.train' has no attribute {name!r}")
