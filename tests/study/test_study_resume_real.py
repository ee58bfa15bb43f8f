"""A real `mimscale study run` (the default run function: real, tiny pre-training) SIGKILLed mid-way
together with its workers, then rerun: the rerun resumes the partial run (not restarting it), does not
run the finished one again, and ends with the same results and curves as an uninterrupted run beside it."""

import pandas as pd
from study_helpers import kill_all, study_cli, wait_until, write_study

from mimscale.study import load_study, run_state, store, study_main

# One long run and one short one (zip over seed and length): with two workers the short one finishes
# while the long one is between checkpoints.
DOC = {
    "name": "real",
    "base": {"model.name": "swinv2-cpu-t", "data.source": "shapes:size=32,pool=128,seed=0",
             "data.val_size": 32, "data.probe_size": 16, "train.batch_size": 8, "train.eval_points": 3,
             "train.recon_images": 0, "train.warmup_iters": 2, "train.base_lr": 5.0e-3, "train.ckpt_every": 3,
             "train.log_every": 1},
    "zip": [{"seed": [0, 1], "train.iters": [60, 6]}],
}


def test_sigkilled_real_study_resumes_and_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = write_study(tmp_path / "s.yaml", DOC)
    study = load_study(path)
    long_run = study.runs[0]
    out, ref = tmp_path / "killed", tmp_path / "ref"
    args = ["--workers", "2", "--threads", "1"]
    reference = study_cli(["run", str(path), "--out", str(ref), *args])  # uninterrupted, alongside
    proc = study_cli(["run", str(path), "--out", str(out), *args])
    ckpts = store.run_dir(out, long_run.id, long_run.cfg).path / "checkpoints"

    def short_done_long_mid_way():
        short_done = any(run_state(out, r.id, []) == "done" for r in study.runs[1:])
        return short_done and ckpts.is_dir() and any(ckpts.glob("step_*.pt"))

    wait_until(short_done_long_mid_way, proc, timeout=120.0)
    # Lose the machine: the runner and every worker die at once, leaving claims behind.
    kill_all(proc, out)
    assert not (store.run_dir(out, long_run.id).path / "summary.json").exists()
    done = {r.id: (store.run_dir(out, r.id).path / "summary.json").read_bytes() for r in study.runs
            if (store.run_dir(out, r.id).path / "summary.json").exists()}
    assert done
    resumed_from = max(int(p.stem.split("_")[1]) for p in ckpts.glob("step_*.pt"))
    assert 0 < resumed_from < 60

    rerun = study_cli(["run", str(path), "--out", str(out), *args])
    _, stderr = rerun.communicate(timeout=240)
    assert rerun.returncode == 0, stderr
    assert f"{len(done)} of 2 runs already finished" in stderr
    assert long_run.id in stderr and "(partial)" in stderr  # resumed, not restarted
    for rid in set(r.id for r in study.runs) - set(done):  # started under their directory's name
        assert f"start   {store.run_dir(out, rid).name}" in stderr
    for rid, before in done.items():  # finished runs were not run again
        assert f"start   {store.run_dir(out, rid).name}" not in stderr
        assert (store.run_dir(out, rid).path / "summary.json").read_bytes() == before
    log = (store.run_dir(out, long_run.id).path / "worker.log").read_text()
    assert log.count(" worker pid ") == 2  # two attempts: the killed one and the resumed one

    _, ref_err = reference.communicate(timeout=240)
    assert reference.returncode == 0, ref_err
    cols = ["seed", "train.iters", "status", "params", "data_size", "iters", "val_loss", "best_val_loss",
            "best_val_step", "train_probe_loss"]
    tables = []
    for d in (out, ref):
        assert study_main(["results", str(d)]) == 0
        tables.append((pd.read_csv(d / "results.csv").set_index("run")[cols],
                       pd.read_csv(d / "curves.csv").query("split in ['val', 'train_probe']")))
    pd.testing.assert_frame_equal(tables[0][0], tables[1][0])
    assert (tables[0][0]["status"] == "done").all()
    curves = [t[1].sort_values(["run", "step", "split", "name"]).reset_index(drop=True) for t in tables]
    pd.testing.assert_frame_equal(curves[0], curves[1])
