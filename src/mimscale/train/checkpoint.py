"""Pre-training checkpoints in the run directory: ``RUN_DIR/checkpoints/step_XXXXXXX.pt`` + ``.json`` meta,
written atomically and pruned. What a checkpoint holds is ``train/setup.py``'s ``CHECKPOINT`` layout (reading
one: ``mimscale.engine.checkpoint.load_checkpoint``)."""

from __future__ import annotations

import time
from pathlib import Path

from mimscale.engine.checkpoint import atomic_torch_save
from mimscale.models.official import file_sha256
from mimscale.rundir import RunDir, atomic_write_json


def save_checkpoint(run_dir: RunDir, step: int, state: dict, meta: dict, keep_last: int = 2,
                    keep: set[int] = frozenset()) -> Path:
    """Write state then its JSON meta (with the file's sha256, verified on load), then prune to the newest
    ``keep_last`` checkpoints (and ``keep``)."""
    path = run_dir.checkpoint(step)
    path.with_suffix(".json").unlink(missing_ok=True)  # never a stale checksum beside a new file
    atomic_torch_save(path, state)
    atomic_write_json(path.with_suffix(".json"), {"step": step, "time": time.time(), **meta,
                                                  "sha256": file_sha256(path)})
    if keep_last > 0:
        for s, old in run_dir.list_checkpoints()[:-keep_last]:
            if s in keep:
                continue
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)
    return path
