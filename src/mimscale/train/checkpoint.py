"""Checkpoints: ``RUN_DIR/checkpoints/step_XXXXXXX.pt`` + ``.json`` meta, written atomically.

A checkpoint holds everything to continue bit-exactly: the SimMIM state dict (``encoder.*`` and
``decoder.*``), optimizer, the loop's counters, sampler position, every RNG state, grad-scaler state, and
the resolved config (so a checkpoint alone says what it is). Everything in it is a tensor or a plain
Python value, so it is loaded with ``weights_only=True``: a file from someone else cannot run code here.
"""

from __future__ import annotations

import pickle
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mimscale.errors import CheckpointError
from mimscale.rundir import RunDir, atomic_write, atomic_write_json

# mimscale 0.1 stored numpy's RNG state as an array; these are what unpickling such an array needs (no
# code runs: torch's weights-only unpickler calls nothing outside this list).
_LEGACY_NUMPY = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def atomic_torch_save(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def save_checkpoint(run_dir: RunDir, step: int, state: dict, meta: dict, keep_last: int = 2,
                    keep: set[int] = frozenset()) -> Path:
    """Write state then its JSON meta, then prune to the newest ``keep_last`` checkpoints (and ``keep``)."""
    path = run_dir.checkpoint(step)
    atomic_torch_save(path, state)
    atomic_write_json(path.with_suffix(".json"), {"step": step, "time": time.time(), **meta})
    if keep_last > 0:
        for s, old in run_dir.list_checkpoints()[:-keep_last]:
            if s in keep:
                continue
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint's contents, loaded weights-only; a file that is not one -> CheckpointError (one line)."""
    try:
        with torch.serialization.safe_globals(_LEGACY_NUMPY):
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if "Unsupported global" in str(e) or "Weights only load failed" in first:
            first = "it holds Python objects other than tensors and plain values (refused: loading would run code)"
        raise CheckpointError(f"{path} is not a readable checkpoint: {first[:200]}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} is not a checkpoint (a {type(obj).__name__}, not a dict)")
    return obj
