"""A study trains runs that differ only in length as one trunk and its branches: the same results as
training each alone, less compute, a plan that says so, and an opt-out."""

import json

import yaml

from mimscale.cli import main
from mimscale.study import load_study, store

BASE = {"model.name": "swinv2-cpu-t", "model.drop_path_rate": 0.1, "data.source": "shapes:size=32,pool=256,seed=0",
        "data.val_size": 64, "data.probe_size": 64, "train.batch_size": 16, "train.eval_points": 4,
        "train.eval_budget": 0, "train.recon_images": 0, "train.warmup_iters": 2, "train.schedule": "step",
        "train.base_lr": 5e-3, "objective.norm_target_window": 15}


def _study(tmp_path, lengths=(12, 20, 16)):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "base": BASE, "axes": {"train.iters": list(lengths)}}))
    return path


def _curves(out, run_id):
    """A run's own curves (a trunk also logs, apart, the evaluations only its branches need)."""
    return [(r["step"], r["split"], r["value"]) for r in store.run_dir(out, run_id).read_metrics()
            if r["name"] == "loss" and r["split"] in ("train", "val", "train_probe")]


def test_shared_study_equals_unshared_and_costs_less(tmp_path, capsys):
    path = _study(tmp_path)
    assert main(["study", "plan", str(path), "--json", "--no-flops"]) == 0
    total = json.loads(capsys.readouterr().out)["total"]
    # 20 in full; 12 from step 10 (7/8 of 12); 16 from step 14: 20 + 2 + 2 instead of 48
    assert (total["train_iterations"], total["train_iterations_unshared"], total["branches"]) == (24, 48, 2)
    assert main(["study", "run", str(path), "--out", str(tmp_path / "shared"), "--workers", "2"]) == 0
    assert main(["study", "run", str(path), "--out", str(tmp_path / "alone"), "--no-share", "--workers", "2"]) == 0
    study = load_study(path)
    trunk = next(r.id for r in study.runs if r.cfg.train.iters == 20)
    for run in study.runs:
        shared = store.run_dir(tmp_path / "shared", run.id).read_summary()
        alone = store.run_dir(tmp_path / "alone", run.id).read_summary()
        assert shared["final_val_loss"] == alone["final_val_loss"] and alone["branched_from"] is None
        assert _curves(tmp_path / "shared", run.id) == _curves(tmp_path / "alone", run.id)
        if run.id != trunk:
            assert shared["branched_from"]["step"] == {12: 10, 16: 14}[run.cfg.train.iters]
            assert shared["branched_from"]["trunk"].endswith(trunk)
    kept = [s for s, _ in store.run_dir(tmp_path / "shared", trunk).list_checkpoints()]
    assert {10, 14} <= set(kept)  # the departure steps outlive keep_last


def test_cosine_study_trains_every_run_alone_and_says_why(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "c", "base": {**BASE, "train.schedule": "cosine"},
                                    "axes": {"train.iters": [12, 20]}}))
    assert main(["study", "plan", str(path), "--no-flops"]) == 0
    assert "shared prefixes: none (not shared: a cosine schedule depends on the length" in capsys.readouterr().out


def test_results_csv_marks_branched_runs(tmp_path):
    import pandas as pd

    path = _study(tmp_path, lengths=(12, 20))
    assert main(["study", "run", str(path), "--out", str(tmp_path / "o"), "--workers", "2"]) == 0
    assert main(["study", "results", str(tmp_path / "o")]) == 0
    table = pd.read_csv(tmp_path / "o" / "results.csv").set_index("train.iters")
    trunk = table.loc[20, "run"]
    assert table.loc[12, "branched_from"] == f"{trunk}@10" and pd.isna(table.loc[20, "branched_from"])
    from mimscale.report import build_report

    html = build_report(tmp_path / "o", tmp_path / "report").read_text()
    assert "Shared training prefixes" in html and f"{trunk}@10" in html


def test_slurm_branches_wait_for_the_trunk_task_that_has_not_ended(tmp_path):
    """Which task each branch's job array depends on (the real queue: tests/study/test_slurm_cluster.py)."""
    from mimscale.study import sharing
    from mimscale.study.slurm import _waits_for

    study = load_study(_study(tmp_path, lengths=(12, 20, 16)))
    out = tmp_path / "o"
    store.init_study_dir(study, out)
    branches, _ = sharing.plan(study)
    by_len = {int(r.cfg.train.iters): r for r in study.runs}
    trunk, b12, b16 = by_len[20].id, by_len[12], by_len[16]
    # The trunk is submitted in this call: both branches wait for it (its task id is known only after).
    assert _waits_for(out, study.runs, branches, {}) == {b12.id: (trunk, None), b16.id: (trunk, None)}
    # The trunk is still in the queue from an earlier submission: they wait for that task.
    queued = {trunk: {"job": "41_2"}}
    assert _waits_for(out, [b12, b16], branches, queued) == {b12.id: (trunk, "41_2"), b16.id: (trunk, "41_2")}
    # The trunk has ended (neither submitted nor queued): nothing to wait for; a started branch never waits.
    assert _waits_for(out, [b12, b16], branches, {}) == {}
    started = store.run_dir(out, b16.id).checkpoint(14)
    started.parent.mkdir(parents=True)
    started.write_bytes(b"")
    assert _waits_for(out, study.runs, branches, {}) == {b12.id: (trunk, None)}
    # When a branch starts, it forks only from a checkpoint the trunk really has at the departure step.
    assert sharing.branch_keys(out, b12.id, branches) == {}
    ckpt = store.run_dir(out, trunk).checkpoint(10)
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    assert sharing.branch_keys(out, b12.id, branches) == {"train.branch_from": f"{store.run_dir(out, trunk).path}@10"}
