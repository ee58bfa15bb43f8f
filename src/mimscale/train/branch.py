"""Start a run from another run's checkpoint at the step where the two part (``train.branch_from``).

The branch directory gets the trunk's checkpoint at that step, the trunk's metrics up to it (training records
all; held-out and training-probe losses only at the branch's own evaluation steps, so its curve is its own
schedule's curve, evaluated by the trunk where they coincide), the matching reconstruction pictures and the
trunk's provenance, and ``branch.json`` saying where it came from. Then ``pretrain`` resumes it like any
interrupted run. ``train/prefix.py`` decides which runs may branch (only where it is exact); the fork checks
it again against what the trunk's checkpoint says it is (its config), so a wrong trunk directory is refused,
and a trunk that lacks the branch's held-out evaluations before the fork (sharing turned on after it passed
them) leaves the branch to train alone: never wrong, only slower.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mimscale import rundir as R
from mimscale.engine.checkpoint import load_checkpoint
from mimscale.errors import ConfigError
from mimscale.rundir import RunDir
from mimscale.train.prefix import why_not_branch


def parse_branch_from(spec: str) -> tuple[RunDir, int]:
    path, _, step = spec.rpartition("@")
    return RunDir(path), int(step)


def _copy(src: Path, dst: Path) -> None:
    """Atomically, streamed: a paper-scale checkpoint (weights + AdamW state) is many GB."""
    with open(src, "rb") as f_in:
        R.atomic_write(dst, lambda f: shutil.copyfileobj(f_in, f, 16 * 2**20))


def _evaluated_steps(records: list[dict], step: int) -> set[int]:
    """The steps up to ``step`` at which the trunk logged a held-out loss (its own or one for its branches)."""
    return {r["step"] for r in records if r.get("split") in (R.VAL, R.SHARED_VAL) and r.get("name") == R.LOSS
            and isinstance(r.get("step"), int) and r["step"] <= step}


def fork(spec: str, branch: RunDir, cfg: DictConfig, eval_at: set[int]) -> bool:
    """Seed ``branch`` (no checkpoint yet) of config ``cfg`` from ``TRUNK_DIR@STEP``: True. False (with a
    printed line) when the trunk lacks some of the branch's evaluations before the fork: the run trains alone.
    A trunk that is another run, or whose schedule cannot share this prefix -> ConfigError (one line)."""
    trunk, step = parse_branch_from(spec)
    ckpt = trunk.checkpoint(step)
    if not ckpt.is_file():
        raise ConfigError(f"train.branch_from={spec}: {ckpt} does not exist (the trunk has not reached step "
                          f"{step}, or it was trained without train.share_with)")
    trunk_cfg = load_checkpoint(ckpt).get("config")  # what the trunk is: its checkpoint says, not its directory
    if not isinstance(trunk_cfg, dict):
        raise ConfigError(f"train.branch_from={spec}: {ckpt} carries no config, so it cannot be checked to be "
                          f"a prefix of this run")
    why = why_not_branch(OmegaConf.create(trunk_cfg), cfg, step)
    if why is not None:
        raise ConfigError(f"train.branch_from={spec}: this run cannot start from it: {why}")
    records = trunk.read_metrics()
    missing = sorted(e for e in eval_at | {0} if e <= step and e not in _evaluated_steps(records, step))
    if missing:
        print(f"[pretrain] train.branch_from={spec}: the trunk has no held-out loss at step(s) "
              f"{', '.join(map(str, missing))} of this run (sharing was turned on after it passed them); "
              f"training this run alone", file=sys.stderr)
        return False
    as_branch = {R.VAL: R.VAL, R.TRAIN_PROBE: R.TRAIN_PROBE, R.SHARED_VAL: R.VAL,
                 R.SHARED_TRAIN_PROBE: R.TRAIN_PROBE}
    kept = []
    for rec in records:
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
    return True
