"""SimMIM pre-training: ``pretrain(cfg) -> summary`` (the run's data, loop, validation, reconstructions, shared
prefixes, summary) on the training engine of ``mimscale.engine``.

Names are imported on first use, so torch-free modules of this package (``schedule``, ``prefix``) serve
the study planner without importing torch.
"""

from __future__ import annotations

from mimscale.errors import Interrupted, TrainingError
from mimscale.lazy import lazy_exports

_NAMES = {"pretrain": "loop", "resolve_run_dir": "loop", "build_simmim": "setup"}
__all__ = [*_NAMES, "Interrupted", "TrainingError"]

__getattr__ = lazy_exports(__name__, _NAMES)
