"""Explicit training state beyond model and optimizer: the loop's counters, every RNG, the run's provenance."""

from __future__ import annotations

import math
import platform
import random
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

import mimscale
from mimscale import rundir as R
from mimscale.config import SCHEMA_VERSION

_COUNTERS = ("step", "skipped_steps", "train_time_s", "images_done")


@dataclass
class TrainState:
    """What the loop counts. The counters travel in every checkpoint; ``history`` (step -> {"val", "train_probe"})
    is rebuilt from metrics.jsonl on resume; ``consecutive_bad`` and ``last_loss`` restart with the process
    (a checkpoint is only written after a finite step)."""

    step: int = 0
    skipped_steps: int = 0  # non-finite steps whose update was skipped, over the whole run
    train_time_s: float = 0.0  # seconds inside training steps (not validation, not checkpoints)
    images_done: int = 0
    consecutive_bad: int = 0
    last_loss: float = math.nan
    history: dict[int, dict] = field(default_factory=dict)

    def counters(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k in _COUNTERS}

    @classmethod
    def resumed(cls, checkpoint: dict, metrics: list[dict]) -> TrainState:
        state = cls(**{k: checkpoint[k] for k in _COUNTERS})
        for rec in metrics:
            if rec.get("name") == R.LOSS and rec.get("split") in (R.VAL, R.TRAIN_PROBE) and rec["step"] <= state.step:
                state.history.setdefault(rec["step"], {})[rec["split"]] = rec["value"]
        return state

    @property
    def images_per_s(self) -> float:
        return self.images_done / max(self.train_time_s, 1e-9)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG as tensors and plain Python values, so a checkpoint loads with ``weights_only=True``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    if isinstance(n, dict):
        n = (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    np.random.set_state(n)  # a tuple: a checkpoint of mimscale 0.1
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
