"""Shared training prefixes in a study: which runs branch from which (``train/prefix.py`` decides, only where
it is exact), the runtime keys that make it happen, and when a branch may start.

A trunk (the longest run of a group that differs only in length) gets ``train.share_with`` = the lengths of
its branches, so it evaluates where they need it and keeps its checkpoint at each departure step. A branch
gets ``train.branch_from`` = ``TRUNK_DIR@STEP`` and waits until that checkpoint exists (local executor: the
scheduler holds it back; Slurm: its job depends on the trunk's task, ``afterany``); it is then an
ordinary run directory (its own metrics, summary, evaluations) that records where it branched from. A trunk
that finished without keeping the checkpoint (trained before sharing was on) leaves its branches to train
alone: never wrong, only slower. Neither key enters the run id, so sharing can be turned on or off
(``--no-share``) on a study directory at any time.
"""

from __future__ import annotations

from pathlib import Path

from mimscale.study import store
from mimscale.study.spec import Study
from mimscale.train.prefix import Branch, plan_sharing, shared_iterations


def plan(study: Study, enabled: bool = True) -> tuple[dict[str, Branch], dict[str, str]]:
    """({branch run id: Branch}, {run id: why it trains alone}); nothing is shared when not ``enabled``."""
    if not enabled:
        return {}, {r.id: "sharing is off (--no-share)" for r in study.runs}
    return plan_sharing([(r.id, r.cfg) for r in study.runs])


def iterations(study: Study, branches: dict[str, Branch]) -> int:
    return shared_iterations([(r.id, r.cfg) for r in study.runs], branches)


def runtime_keys(study: Study, study_dir: Path, run_id: str, branches: dict[str, Branch]) -> dict:
    """The keys that make ``run_id`` a trunk or a branch when it starts (none: it trains alone)."""
    return trunk_keys(study, run_id, branches) or branch_keys(study_dir, run_id, branches)


def trunk_keys(study: Study, run_id: str, branches: dict[str, Branch]) -> dict:
    lengths = sorted({int(study.run(rid).cfg.train.iters) for rid, b in branches.items() if b.trunk == run_id})
    return {"train.share_with": lengths} if lengths else {}


def branch_keys(study_dir: Path, run_id: str, branches: dict[str, Branch]) -> dict:
    """Decided when the branch starts, not when it is scheduled: from the trunk's checkpoint at the departure
    step if it is there; otherwise (the trunk finished without keeping it, or ended before the step) the run
    trains alone. A branch that already has checkpoints of its own resumes from them either way."""
    b = branches.get(run_id)
    if b is None:
        return {}
    trunk = store.run_dir(study_dir, b.trunk)
    return {"train.branch_from": f"{trunk.path}@{b.step}"} if trunk.checkpoint(b.step).is_file() else {}


def waiting_for(study_dir: Path, run_id: str, branches: dict[str, Branch]) -> str | None:
    """Why a branch cannot start yet, or None when it can (local executor; on Slurm a job dependency waits)."""
    b = branches.get(run_id)
    if b is None or store.run_dir(study_dir, run_id).list_checkpoints():
        return None
    trunk = store.run_dir(study_dir, b.trunk)
    if trunk.checkpoint(b.step).is_file() or trunk.is_finished():
        return None
    return f"waits for {b.trunk} to reach step {b.step}"
