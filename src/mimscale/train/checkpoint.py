"""Checkpoints and atomic files: ``checkpoints/step_XXXXXXX.pt`` + ``.json`` meta, temp-file + rename.

A checkpoint holds everything to continue bit-exactly: the SimMIM state dict (``encoder.*`` and
``decoder.*``), optimizer, step, sampler position, every RNG state, grad-scaler state, and the
resolved config (so a checkpoint alone says what it is).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from mimscale.atomic import atomic_write, atomic_write_json

_STEP_RE = re.compile(r"step_(\d{7,})\.pt$")


def atomic_torch_save(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}.pt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint, oldest first. Temp files never match."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_RE.search(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def save_checkpoint(run_dir: Path, step: int, state: dict, meta: dict, keep_last: int = 2) -> Path:
    """Write state then its JSON meta, then prune to the newest ``keep_last`` checkpoints."""
    path = checkpoint_path(run_dir, step)
    atomic_torch_save(path, state)
    atomic_write_json(path.with_suffix(".json"), {"step": step, **meta})
    if keep_last > 0:
        for _, old in list_checkpoints(run_dir)[:-keep_last]:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    # weights_only=False: the state holds numpy RNG states and plain Python containers we wrote ourselves.
    return torch.load(path, map_location=map_location, weights_only=False)
