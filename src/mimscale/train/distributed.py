"""Kept for callers outside ``train/`` (``evaluate/runner.py``, ``val_loss.py``, ``segment.py``, ``bench.py``):
the helpers live in ``mimscale.engine.distributed``."""

from mimscale.engine.distributed import *  # noqa: F403
from mimscale.engine.distributed import resolve_device  # noqa: F401  (named for readers and linters)
