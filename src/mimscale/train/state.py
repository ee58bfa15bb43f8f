"""Explicit training state beyond model and optimizer: the loop's counters, every RNG, the run's provenance."""

from __future__ import annotations

import math
import platform
import random
import signal
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

_COUNTERS = ("step", "skipped_steps", "skipped_files", "train_time_s", "images_done", "initial_weight_norm")
# Smoothing of the training loss for the divergence guard: a ~10-step average reacts within a few steps of a
# blow-up, while batch-to-batch noise (+-20% on the CPU presets) stays far below a 4x rise.
LOSS_EMA_BETA = 0.9


@dataclass
class TrainState:
    """What the loop counts. The counters travel in every checkpoint; ``history`` (step -> {"val", "train_probe"})
    is rebuilt from metrics.jsonl on resume; ``consecutive_bad`` and ``last_loss`` restart with the process
    (a checkpoint is only written after a finite step)."""

    step: int = 0
    skipped_steps: int = 0  # non-finite steps whose update was skipped, over the whole run
    skipped_files: int = 0  # unreadable training images replaced by the loader, over the whole run
    train_time_s: float = 0.0  # seconds inside training steps (not validation, not checkpoints)
    images_done: int = 0
    initial_weight_norm: float = 0.0  # of the freshly initialised model (0: unknown, a checkpoint of mimscale 0.1)
    consecutive_bad: int = 0
    last_loss: float = math.nan
    loader_skips: int = 0  # the loader's own count in this process (it restarts at 0 on resume)
    loss_ema: float = math.nan  # smoothed training loss; it and its minimum restart with the process
    min_loss_ema: float = math.inf
    min_loss_ema_step: int = 0
    history: dict[int, dict] = field(default_factory=dict)

    def counters(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k in _COUNTERS}

    @classmethod
    def resumed(cls, checkpoint: dict, metrics: list[dict]) -> TrainState:
        state = cls(**{k: checkpoint.get(k, 0) for k in _COUNTERS})  # skipped_files: since mimscale 0.2
        for rec in metrics:
            if rec.get("name") == R.LOSS and rec.get("split") in (R.VAL, R.TRAIN_PROBE) and rec["step"] <= state.step:
                state.history.setdefault(rec["step"], {})[rec["split"]] = rec["value"]
        return state

    def count_loader_skips(self, loader_total: int) -> int:
        """Add the loader's new skips since the last call; returns how many were new."""
        new = loader_total - self.loader_skips
        self.loader_skips, self.skipped_files = loader_total, self.skipped_files + new
        return new

    def track_loss(self, loss: float) -> None:
        self.loss_ema = loss if math.isnan(self.loss_ema) else LOSS_EMA_BETA * self.loss_ema + (1 - LOSS_EMA_BETA) * loss
        if self.loss_ema < self.min_loss_ema:
            self.min_loss_ema, self.min_loss_ema_step = self.loss_ema, self.step

    def diverged(self, factor: float) -> bool:
        return factor > 0 and self.loss_ema > factor * self.min_loss_ema

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


class SignalFlag:
    """Records SIGTERM / SIGINT so a training loop can checkpoint at its next step boundary (a context manager)."""

    def __init__(self):
        self.signum = 0
        self._previous = {}

    def __enter__(self):
        for s in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread (e.g. inside a worker thread): no handler
                pass
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._previous.items():
            signal.signal(s, h)
