"""The Slurm executor through submitit's local (subprocess) and debug (in-process) backends."""

import json
from types import SimpleNamespace

import pytest
from study_helpers import write_study

from mimscale.study import init_study_dir, load_study, run_state, store, study_main
from mimscale.study.slurm import run_slurm

DOC = {"name": "toy", "base": {"train.iters": 4}, "axes": {"data.fraction": [0.25, 0.5, 1.0]},
       "evals": [{"name": "knn", "task": "knn"}]}


def test_job_array_runs_every_run_records_failures_and_resubmits_only_what_is_left(tmp_path, helper_env):
    study = load_study(write_study(tmp_path / "s.yaml", DOC))
    out = tmp_path / "out"
    init_study_dir(study, out)
    results = run_slurm(study, out, cluster="local", wait=True, cpus_per_run=1,
                        run_fn="study_helpers:failing_on_small_data", log=lambda m: None)
    by_run = {r["run"]: r for r in results}
    assert [r["status"] for r in results] == ["failed", "done", "done"]
    failed = study.runs[0].id
    assert by_run[failed]["exit"] == 1
    assert "boom: fraction 0.25" in (store.run_dir(out, failed).path / "error.txt").read_text()
    assert len(list((out / "slurm").glob("*_log.out"))) == 3  # one log per array task
    # a second submission only carries the failed run
    again = run_slurm(study, out, cluster="debug", wait=True, run_fn="study_helpers:toy_pretrain",
                      log=lambda m: None)
    assert [r["run"] for r in again] == [failed] and again[0]["status"] == "done"
    assert all(run_state(out, r.id, ["knn"]) == "done" for r in study.runs)
    assert run_slurm(study, out, cluster="debug", wait=True, log=lambda m: None) == []
    cfg = json.loads((store.run_dir(out, failed).path / "status.json").read_text())
    assert cfg["status"] == "done" and cfg["attempts"] == 2


def test_cli_slurm_path_with_debug_backend(tmp_path, helper_env, capsys):
    path = write_study(tmp_path / "s.yaml", DOC)
    args = ["run", str(path), "--out", str(tmp_path / "out"), "--executor", "slurm",
            "--slurm-cluster", "debug", "--wait", "--run-fn", "study_helpers:toy_pretrain"]
    assert study_main(args) == 0
    assert "submitted 3 runs of toy as job" in capsys.readouterr().out
    assert study_main(["status", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"done": 3}


@pytest.mark.parametrize("gpus", [2])
def test_multi_gpu_runs_go_through_torchrun(tmp_path, monkeypatch, gpus):
    from mimscale.study import slurm

    calls = []
    monkeypatch.setattr(slurm.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or SimpleNamespace(returncode=0))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text(json.dumps({"status": "done"}))
    study = load_study(write_study(tmp_path / "s.yaml", {**DOC, "evals": []}))
    from mimscale.study.worker import with_runtime

    cfg = with_runtime(study.runs[0].cfg, run_dir, 4)
    assert slurm.torchrun_pretrain(cfg, [], gpus) == {"status": "done"}
    cmd = calls[0]
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]
    assert cmd[5:7] == ["-m", "mimscale.study.slurm"] and cmd[7] == str(run_dir / "launch.yaml")
    from mimscale.config import load_config, run_id

    assert run_id(load_config(cmd[7])) == study.runs[0].id
