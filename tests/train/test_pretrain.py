"""End-to-end pre-training on built-in data through real processes: resume, signals, NaN guard, DDP."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mimscale.cli import main
from mimscale.engine.checkpoint import load_checkpoint
from mimscale.rundir import RunDir

TINY = ["model.name=swinv2-cpu-t", "data.source=shapes:size=32,pool=256,seed=0", "data.val_size=64",
        "data.probe_size=64", "train.batch_size=16", "train.eval_points=2", "train.eval_budget=0", "train.recon_images=2",
        "threads=1", "train.warmup_iters=5", "train.base_lr=5e-3", "objective.norm_target_window=15"]


def _cli(args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "mimscale.cli", "pretrain", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _wait_for_checkpoint(run_dir: Path, proc, timeout=120.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if RunDir(run_dir).list_checkpoints():
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended before a checkpoint: {proc.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


def _final_weights(run_dir: Path) -> dict:
    return load_checkpoint(RunDir(run_dir).latest_checkpoint())["model"]


def test_sigkill_resume_is_bit_identical(tmp_path):
    args = TINY + ["train.iters=60", "train.ckpt_every=5"]
    ref = _cli(args + [f"run_dir={tmp_path / 'ref'}"])
    victim = _cli(args + [f"run_dir={tmp_path / 'victim'}"])
    _wait_for_checkpoint(tmp_path / "victim", victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "victim" / "summary.json").exists()
    killed_at = RunDir(tmp_path / "victim").list_checkpoints()[-1][0]
    assert killed_at < 60
    resumed = _cli(args + [f"run_dir={tmp_path / 'victim'}"])
    assert resumed.wait() == 0, resumed.stderr.read()
    assert ref.wait() == 0, ref.stderr.read()
    a, b = _final_weights(tmp_path / "ref"), _final_weights(tmp_path / "victim")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa = json.loads((tmp_path / "ref" / "summary.json").read_text())
    sb = json.loads((tmp_path / "victim" / "summary.json").read_text())
    assert sa["final_val_loss"] == sb["final_val_loss"]
    # the resumed metrics file has one value per (step, split, name): nothing duplicated by the restart
    recs = [json.loads(ln) for ln in (tmp_path / "victim" / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["step"], r["split"], r["name"]) for r in recs]
    assert len(keys) == len(set(keys))


def test_fp16_scaler_backs_off_counts_skipped_steps_and_resumes_exactly(tmp_path):
    """fp16 with a grad scaler (the official recipe; CPU autocast runs it here). A first loss scale of 1e9
    overflows the fp16 gradients for the first 13 steps: each is skipped and counted (more than
    train.max_nonfinite = 10 in a row, which stops a run only for non-finite losses), the scale backs off,
    and the scale in the checkpoint makes a SIGKILLed run resume to the same weights bit for bit."""
    args = TINY + ["train.iters=60", "train.ckpt_every=5", "train.precision=fp16", "train.fp16_init_scale=1e9"]
    ref = _cli(args + [f"run_dir={tmp_path / 'ref'}"])
    victim = _cli(args + [f"run_dir={tmp_path / 'victim'}"])
    _wait_for_checkpoint(tmp_path / "victim", victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at, ckpt = RunDir(tmp_path / "victim").list_checkpoints()[-1]
    assert killed_at < 60 and load_checkpoint(ckpt)["scaler"]["scale"] < 1e9
    resumed = _cli(args + [f"run_dir={tmp_path / 'victim'}"])
    assert resumed.wait() == 0, resumed.stderr.read()
    assert ref.wait() == 0, ref.stderr.read()
    a, b = _final_weights(tmp_path / "ref"), _final_weights(tmp_path / "victim")
    assert all(torch.equal(a[k], b[k]) for k in a)
    for run in ("ref", "victim"):
        summary = json.loads((tmp_path / run / "summary.json").read_text())
        logged = [json.loads(ln) for ln in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        skipped = sorted(r["step"] for r in logged if r["name"] == "skipped_step")
        assert summary["skipped_steps"] == len(skipped) > 10 and skipped == list(range(1, len(skipped) + 1))


def test_sigterm_writes_loadable_checkpoint_and_resumes(tmp_path):
    run = tmp_path / "run"
    args = TINY + ["train.iters=400", "train.ckpt_every=200", f"run_dir={run}"]
    proc = _cli(args)
    t0 = time.time()
    while not (run / "metrics.jsonl").exists() or "\"split\": \"train\"," not in (run / "metrics.jsonl").read_text():
        assert time.time() - t0 < 120 and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert "checkpoint written" in proc.stderr.read()
    state = load_checkpoint(RunDir(run).latest_checkpoint())
    assert 0 < state["step"] < 400 and "optimizer" in state and state["config"]["train"]["iters"] == 400
    resumed = _cli(args)
    assert resumed.wait() == 0, resumed.stderr.read()
    assert json.loads((run / "summary.json").read_text())["iters"] == 400


def test_nan_is_skipped_and_counted_then_stops(tmp_path, capsys):
    ok = main(["pretrain", *TINY, "train.iters=12", "train.debug_nan_steps=[3]", f"run_dir={tmp_path / 'a'}"])
    assert ok == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["skipped_steps"] == 1
    code = main(["pretrain", *TINY, "train.iters=12", "train.debug_nan_steps=[3,4,5]", "train.max_nonfinite=3",
                 f"run_dir={tmp_path / 'b'}"])
    err = capsys.readouterr().err
    assert code == 1 and "3 consecutive non-finite losses at step 6" in err
    for _, path in RunDir(tmp_path / "b").list_checkpoints():
        for v in load_checkpoint(path)["model"].values():
            assert torch.isfinite(v).all()


def test_real_learning_validation_loss_falls(tmp_path):
    run = tmp_path / "run"
    assert main(["pretrain", *TINY, "train.iters=150", "train.eval_points=3", f"run_dir={run}"]) == 0
    s = json.loads((run / "summary.json").read_text())
    assert s["final_val_loss"] < 0.85 * s["initial_val_loss"], s
    assert s["final_train_probe_loss"] > 0 and s["flops_per_image"] > 0
    assert s["epochs_equivalent"] == pytest.approx(150 * 16 / s["data_size"])
    assert (run / "provenance.json").exists() and (run / "config.yaml").exists()
    pictures = sorted((run / "recon").glob("step_*.png"))
    assert len(pictures) == 4  # step 0 and 3 evaluations


@pytest.mark.parametrize("override, message", [
    ("data.source=folder:/no/such/dir", "/no/such/dir"),
    ("model.name=swinv2-xx", "unknown model 'swinv2-xx'"),
    ("train.batch_size=15", "not divisible"),
    ("data.img_size=36", "img_size"),
    ("train.eval_budget=-0.1", "train.eval_budget must be >= 0"),
    ("train.eval_points=0", "train.eval_points must be positive"),
])
def test_bad_input_exit_2_one_line(tmp_path, capsys, override, message):
    # a 2-step run: TINY's 5 warmup steps would be longer than the run (refused), hence 1
    code = main(["pretrain", *TINY, "train.iters=2", "train.warmup_iters=1", "train.accum_steps=2", override,
                 f"run_dir={tmp_path}/r"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err


def test_ddp_two_ranks_matches_one_process_and_resumes(tmp_path):
    common = TINY + ["train.iters=10", "model.drop_path_rate=0.0", "train.ckpt_every=5", "train.eval_points=1"]
    assert main(["pretrain", *common, f"run_dir={tmp_path / 'single'}"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --standalone: a c10d rendezvous on localhost:0, so each launch gets a free port (no fixed port that a
    # concurrent test, xdist worker or leftover process could hold).
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mimscale.cli", "pretrain", *common, f"run_dir={tmp_path / 'ddp'}"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    def curve(run):
        recs = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["value"] for r in recs if r["split"] == "train" and r["name"] == "loss"]

    single, ddp = curve(tmp_path / "single"), curve(tmp_path / "ddp")
    assert len(single) == len(ddp) > 0
    # same global batch, same data order: equal up to float reduction order (stated tolerance 1e-4 relative)
    for a, b in zip(single, ddp):
        assert abs(a - b) <= 1e-4 * abs(a), (single, ddp)
    # resume from its own checkpoint: drop the summary and the last checkpoint, rerun to the end
    (tmp_path / "ddp" / "summary.json").unlink()
    RunDir(tmp_path / "ddp").list_checkpoints()[-1][1].unlink()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert curve(tmp_path / "ddp") == ddp


def test_eval_budget_thins_evaluations_of_a_short_run(tmp_path, capsys):
    # 40 steps x 16 images; 128 eval images at 0.4 of a training image: 5% affords 0.6 evaluations, and the
    # final one is always made -> 1 point instead of 4, and the run says so.
    run = tmp_path / "run"
    args = [*TINY, "train.iters=40", "train.eval_points=4", "train.eval_budget=0.05", f"run_dir={run}"]
    assert main(["pretrain", *args]) == 0
    vals = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["split"] == "val"]
    assert vals == [0, 40]
    assert "validation at 1 evenly spaced points instead of 4" in capsys.readouterr().err
    # checkpoints keep the unthinned schedule (10, 20, 30, 40; the last train.keep_last=2 kept)
    assert [step for step, _ in RunDir(run).list_checkpoints()] == [30, 40]
