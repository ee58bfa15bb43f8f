"""Start a run from another run's checkpoint at the step where the two part (``train.branch_from``).

The branch directory gets the trunk's checkpoint at that step, the trunk's metrics up to it (training records
all; held-out and training-probe losses only at the branch's own evaluation steps, so its curve is its own
schedule's curve, evaluated by the trunk where they coincide), the matching reconstruction pictures and the
trunk's provenance, and ``branch.json`` saying where it came from. Then ``pretrain`` resumes it like any
interrupted run. ``train/prefix.py`` decides which runs may branch (only where it is exact).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mimscale import rundir as R
from mimscale.errors import ConfigError
from mimscale.rundir import RunDir


def parse_branch_from(spec: str) -> tuple[RunDir, int]:
    path, _, step = spec.rpartition("@")
    return RunDir(path), int(step)


def _copy(src: Path, dst: Path) -> None:
    """Atomically, streamed: a paper-scale checkpoint (weights + AdamW state) is many GB."""
    with open(src, "rb") as f_in:
        R.atomic_write(dst, lambda f: shutil.copyfileobj(f_in, f, 16 * 2**20))


def fork(spec: str, branch: RunDir, eval_at: set[int]) -> None:
    """Seed ``branch`` (no checkpoint yet) from ``TRUNK_DIR@STEP``."""
    trunk, step = parse_branch_from(spec)
    ckpt = trunk.checkpoint(step)
    if not ckpt.is_file():
        raise ConfigError(f"train.branch_from={spec}: {ckpt} does not exist (the trunk has not reached step "
                          f"{step}, or it was trained without train.share_with)")
    as_branch = {R.VAL: R.VAL, R.TRAIN_PROBE: R.TRAIN_PROBE, R.SHARED_VAL: R.VAL,
                 R.SHARED_TRAIN_PROBE: R.TRAIN_PROBE}
    kept = []
    for rec in trunk.read_metrics():
        if rec.get("step", 1 << 62) > step:
            continue
        if rec.get("split") in as_branch:  # the losses at the branch's own evaluation steps, as its own
            if rec["step"] not in eval_at | {0}:
                continue
            rec = {**rec, "split": as_branch[rec["split"]]}
        kept.append(rec)
    kept.sort(key=lambda r: r["step"])  # stable: the trunk's order within a step
    R.atomic_write_text(branch.metrics, "".join(json.dumps(rec) + "\n" for rec in kept))
    for s in sorted(e for e in eval_at | {0} if e <= step):
        if trunk.recon(s).is_file():
            _copy(trunk.recon(s), branch.recon(s))
    if trunk.provenance.is_file():
        _copy(trunk.provenance, branch.provenance)
    R.atomic_write_json(branch.branch, {"trunk": str(trunk.path), "step": step})
    _copy(ckpt.with_suffix(".json"), branch.checkpoint(step).with_suffix(".json"))
    _copy(ckpt, branch.checkpoint(step))  # last: a checkpoint means "resume from here"
