"""Shared training prefixes: a run branched from a longer run's checkpoint is bit-identical to the same run
trained alone; sharing is planned only where it is exact, and says why not elsewhere."""

from pathlib import Path

import pytest
import torch

from mimscale.cli import main
from mimscale.config import load_config
from mimscale.engine.checkpoint import load_checkpoint
from mimscale.engine.schedule import LRSchedule
from mimscale.rundir import RunDir
from mimscale.train.prefix import plan_sharing, shared_iterations

REPO = Path(__file__).resolve().parents[2]
TINY = ["model.name=swinv2-cpu-t", "model.drop_path_rate=0.1", "data.source=shapes:size=32,pool=256,seed=0",
        "data.val_size=64", "data.probe_size=64", "train.batch_size=16", "train.eval_points=4",
        "train.eval_budget=0", "train.recon_images=2", "threads=1", "train.warmup_iters=2", "train.schedule=step",
        "train.base_lr=5e-3", "objective.norm_target_window=15"]


def _losses(rd: RunDir) -> dict:
    return {(r["step"], r["split"]): r["value"] for r in rd.read_metrics()
            if r["name"] == "loss" and r["split"] in ("val", "train_probe", "train")}


def test_a_branched_run_is_bit_identical_to_the_same_run_trained_alone(tmp_path):
    alone, trunk, branch = (RunDir(tmp_path / n) for n in ("alone", "trunk", "branch"))
    assert main(["pretrain", *TINY, "train.iters=12", f"run_dir={alone}"]) == 0
    assert main(["pretrain", *TINY, "train.iters=20", "train.share_with=[12]", f"run_dir={trunk}"]) == 0
    assert 10 in [s for s, _ in trunk.list_checkpoints()]  # the departure step (7/8 of 12) is kept
    assert main(["pretrain", *TINY, "train.iters=12", f"train.branch_from={trunk}@10", f"run_dir={branch}"]) == 0

    a, b = load_checkpoint(alone.latest_checkpoint()), load_checkpoint(branch.latest_checkpoint())
    assert a["step"] == b["step"] == 12
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i])
    assert _losses(branch) == _losses(alone)  # every held-out, probe and training loss, at the same steps
    evals = sorted(s for s, split in _losses(branch) if split == "val")
    assert evals == [0, 3, 6, 9, 12]  # its own schedule, not the trunk's (5, 10, 15, 20)
    assert branch.read_summary()["branched_from"] == {"trunk": str(trunk.path), "step": 10}
    assert branch.read_summary()["final_val_loss"] == alone.read_summary()["final_val_loss"]
    assert alone.read_summary()["branched_from"] is None


def test_a_branch_needs_the_trunk_checkpoint(tmp_path, capsys):
    code = main(["pretrain", *TINY, "train.iters=12", f"train.branch_from={tmp_path / 'none'}@10",
                 f"run_dir={tmp_path / 'b'}"])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def _runs(*overrides, lengths=(125_000, 250_000, 500_000)):
    cfgs = [load_config("pretrain/swinv2-paper.yaml", [f"train.iters={n}", *overrides]) for n in lengths]
    return [(f"r{n}", c) for n, c in zip(lengths, cfgs)]


def test_plan_shares_exactly_where_the_lr_does_not_depend_on_the_length():
    runs = _runs("train.warmup_iters=1562")
    branches, alone = plan_sharing(runs)
    assert {r: (b.trunk, b.step) for r, b in branches.items()} == {"r125000": ("r500000", 109_375),
                                                                   "r250000": ("r500000", 218_750)}
    assert shared_iterations(runs, branches) == 546_875  # vs 875,000 unshared: 1.6x less
    # every branch's LR equals the trunk's at every step before its departure
    trunk = LRSchedule.from_config(runs[2][1].train, 500_000)
    for rid, cfg in runs[:2]:
        mine = LRSchedule.from_config(cfg.train, int(cfg.train.iters))
        assert all(mine(s) == trunk(s) for s in range(0, branches[rid].step, 97))
        assert mine(branches[rid].step) != trunk(branches[rid].step)

    wsd = _runs("train.warmup_iters=1562", "train.schedule=wsd", "train.decay_fraction=0.2")
    assert {r: b.step for r, b in plan_sharing(wsd)[0].items()} == {"r125000": 100_000, "r250000": 200_000}


@pytest.mark.parametrize("overrides, why", [
    ((), "warmup is a fraction of the run"),  # the shipped paper recipe: 1.25% of each run
    (("train.warmup_iters=1562", "train.schedule=cosine"), "cosine schedule depends on the length"),
])
def test_plan_does_not_share_when_it_would_not_be_exact(overrides, why):
    branches, alone = plan_sharing(_runs(*overrides))
    assert not branches and all(why in alone[r] for r in ("r125000", "r250000"))
