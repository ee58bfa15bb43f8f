"""What every training loop needs from its process: seeding, every RNG's state, autocast, the signal flag."""

from __future__ import annotations

import contextlib
import random
import signal

import numpy as np
import torch

from mimscale.engine import distributed as dist


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


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


class RankRNG:
    """Every rank's RNG state as one checkpoint part: saved gathered (a resumed DDP run continues each rank's
    stream exactly), restored per rank (a checkpoint of fewer ranks gives every extra rank rank 0's)."""

    def state_dict(self) -> list[dict]:
        return dist.all_gather_object(rng_state())

    def load_state_dict(self, states: list[dict]) -> None:
        rank = dist.rank()
        set_rng_state(states[rank] if rank < len(states) else states[0])


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
