"""Shared training prefixes: which runs of a grid are, up to some step, the same run (``plan_sharing``).

Two runs share their first ``s`` steps exactly when they differ only in length (``train.iters``) and nothing
they do before step ``s`` depends on the length. The data order, the masks and the augmentation are seeded by
(seed, epoch, position in the epoch) and the global batch, never by the length (``data/loader.py``); drop
path draws from the same RNG stream in the same order; so what remains is the learning rate:
- ``step`` schedule: the LR is the peak until ``int(step_at x total)``: a shorter run departs there;
- ``wsd``: the LR is the peak until the last ``decay_fraction`` of the run: a shorter run departs at its
  cool-down;
- ``cosine``: the LR depends on the length from the end of warmup: nothing worth sharing;
- a warmup given as a fraction of the run (``train.warmup_iters: -1``) is longer for longer runs: nothing is
  shared (give the warmup in iterations to share).
Evaluations and checkpoints do not change training (they draw no random numbers), so a trunk can evaluate
and checkpoint where its branches need it. The longest run of each group is the trunk; every shorter run is
trained from the trunk's checkpoint at its departure step, in its own run directory (``train.branch_from``).
Torch-free: the study planner uses it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from omegaconf import DictConfig

from mimscale import config as C
from mimscale.engine.schedule import decay_start


@dataclass(frozen=True)
class Branch:
    trunk: str  # run id of the run it branches from
    step: int  # the first step at which the two runs differ; the branch starts from the trunk's checkpoint here


def length_free_identity(cfg: DictConfig) -> str:
    ident = C.identity(cfg)
    ident["train"].pop("iters", None)
    return json.dumps(ident, sort_keys=True)


def departure(t, iters: int) -> tuple[int | None, str]:
    """(the step from which the LR of a run with ``train`` section ``t`` and ``iters`` steps depends on its
    length, or None; why, in words)."""
    if iters <= 0:
        return None, "its length is given in epochs or samples, not iterations"
    if t.warmup_iters < 0:
        return None, "its warmup is a fraction of the run (set train.warmup_iters to share)"
    try:
        start = decay_start(int(iters), t.schedule, t.step_at, t.decay_fraction)
    except ValueError as e:
        return None, str(e)
    if start <= t.warmup_iters:
        return None, "its decay starts before its warmup ends"
    return start, f"its {t.schedule} decay starts at step {start}"


def why_not_branch(trunk: DictConfig, branch: DictConfig, step: int) -> str | None:
    """Why a run ``branch`` cannot start from run ``trunk``'s checkpoint at ``step`` (None: it can): the two
    must differ only in length (and the placement keys), the branch must depart there and the trunk's LR must
    still be the shared one up to it."""
    if length_free_identity(trunk) != length_free_identity(branch):
        return "the trunk is another run (it differs in more than its length)"
    if int(trunk.train.iters) <= step:
        return f"the trunk is only {trunk.train.iters} steps long"
    mine, why = departure(branch.train, int(branch.train.iters))
    if mine is None:
        return f"this run cannot share a prefix: {why}"
    if mine != step:
        return f"this run departs from a longer one at step {mine}, not {step}"
    theirs, why = departure(trunk.train, int(trunk.train.iters))
    if theirs is None or theirs < step:
        return f"the trunk's LR departs before step {step} ({why})"
    return None


def plan_sharing(runs: list[tuple[str, DictConfig]]) -> tuple[dict[str, Branch], dict[str, str]]:
    """({run id: Branch} for every run trained from a trunk, {run id: why not} for runs that train alone)."""
    groups: dict[str, list[tuple[str, DictConfig]]] = {}
    for rid, cfg in runs:
        groups.setdefault(length_free_identity(cfg), []).append((rid, cfg))
    branches, alone = {}, {}
    for members in groups.values():
        members.sort(key=lambda m: -int(m[1].train.iters))
        trunk_id, trunk = members[0]
        if len(members) == 1:
            alone[trunk_id] = "no other run differs from it only in length"
            continue
        for rid, cfg in members[1:]:
            step, why = departure(cfg.train, int(cfg.train.iters))
            if step is None or int(cfg.train.iters) == int(trunk.train.iters):
                alone[rid] = f"not shared: {why}" if step is None else "same length as its trunk"
            else:
                branches[rid] = Branch(trunk_id, step)
    return branches, alone


def shared_iterations(runs: list[tuple[str, DictConfig]], branches: dict[str, Branch]) -> int:
    """Optimizer steps the grid costs with sharing: trunks and lone runs in full, branches from departure."""
    return sum(int(cfg.train.iters) - (branches[rid].step if rid in branches else 0) for rid, cfg in runs)
