"""A pre-training run's own counters (a checkpoint part) and its provenance."""

from __future__ import annotations

import math
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import torch

import mimscale
from mimscale.config import SCHEMA_VERSION

COUNTERS = ("step", "skipped_steps", "skipped_files", "train_time_s", "images_done")


@dataclass
class TrainState:
    """What the loop counts. The counters travel in every checkpoint (``state_dict``); ``last_loss`` and
    ``loader_skips`` restart with the process."""

    step: int = 0
    skipped_steps: int = 0  # non-finite steps whose update was skipped, over the whole run
    skipped_files: int = 0  # unreadable training images replaced by the loader, over the whole run
    train_time_s: float = 0.0  # seconds inside training steps (not validation, not checkpoints)
    images_done: int = 0
    last_loss: float = math.nan
    loader_skips: int = 0  # the loader's own count in this process (it restarts at 0 on resume)

    def state_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k in COUNTERS}

    def load_state_dict(self, saved: dict) -> None:
        for k in COUNTERS:
            setattr(self, k, saved.get(k, 0))  # skipped_files: since mimscale 0.2

    def count_loader_skips(self, loader_total: int) -> int:
        """Add the loader's new skips since the last call; returns how many were new."""
        new = loader_total - self.loader_skips
        self.loader_skips, self.skipped_files = loader_total, self.skipped_files + new
        return new

    @property
    def images_per_s(self) -> float:
        return self.images_done / max(self.train_time_s, 1e-9)


def _git_commit() -> str | None:
    src = Path(mimscale.__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def provenance(device: torch.device, world: int) -> dict:
    packages = {}
    for name in ("torch", "numpy", "pillow", "omegaconf", "scipy", "pandas", "webdataset"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {
        "mimscale_version": mimscale.__version__,
        "config_schema": SCHEMA_VERSION,
        "git_commit": _git_commit(),
        "command": sys.argv,
        "python": sys.version.split()[0],
        "packages": packages,
        "platform": platform.platform(),
        "host": platform.node(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "threads": torch.get_num_threads(),
        "world_size": world,
    }
