"""A multi-GPU Slurm task (``--gpus-per-run G > 1``: torchrun inside the task) under the signal Slurm sends
before a time limit: the ranks checkpoint at the step they agree on, the run is recorded interrupted (not
failed), and running the task again resumes from that checkpoint.

Slurm delivers the signal to every process of the task, whatever its session (proctrack follows descendants;
torchrun starts its ranks in sessions of their own): the test signals the task and all its descendants (the
torchrun agent and both ranks).
Two CPU ranks (gloo) stand in for GPUs. Measured on the 2-core CI machine: about 40 s.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from study_helpers import write_study

from mimscale.rundir import RunDir
from mimscale.study import load_study, run_state, store

pytestmark = pytest.mark.multiprocess

TASK = """
import functools, sys
from pathlib import Path
from mimscale.study import load_study, store
from mimscale.study.slurm import StopRequest, torchrun_pretrain
from mimscale.study.worker import execute, with_runtime

study, out = load_study(sys.argv[1]), Path(sys.argv[2])
store.init_study_dir(study, out)
run = study.runs[0]
with StopRequest():  # as StudyTask does
    code = execute(out, run.id, with_runtime(run.cfg, store.run_dir(out, run.id, run.cfg), 1), [],
                   functools.partial(torchrun_pretrain, gpus=2))
sys.exit(code)
"""

STUDY = {"name": "torchrun-task", "base": {
    "model.name": "swinv2-cpu-t", "model.drop_path_rate": 0.0, "data.source": "shapes:size=32,pool=256,seed=0",
    "data.val_size": 32, "data.probe_size": 16, "train.batch_size": 16, "train.eval_points": 1,
    "train.recon_images": 0, "train.warmup_iters": 2, "train.base_lr": 5e-3, "train.iters": 400,
    "train.ckpt_every": 100, "train.log_every": 10}}


@pytest.fixture
def gloo(skip_or_fail):
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        skip_or_fail("this torch build has no torch.distributed with gloo (CPU collectives)")


def _descendants(pid: int) -> list[int]:
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        todo += kids
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _task(path: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", TASK, str(path), str(out)], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_the_requeue_signal_checkpoints_every_rank_and_records_interrupted(gloo, tmp_path):
    path = write_study(tmp_path / "s.yaml", STUDY)
    study, out = load_study(path), tmp_path / "out"
    run_dir = RunDir(store.run_dir(out, study.runs[0].id, study.runs[0].cfg).path)
    task = _task(path, out)
    t0 = time.time()
    while not run_dir.list_checkpoints():
        assert task.poll() is None, task.stdout.read()[-3000:]
        assert time.time() - t0 < 180, "no periodic checkpoint"
        time.sleep(0.1)
    ranks = _descendants(task.pid)
    assert len(ranks) >= 3, ranks  # the torchrun agent and two ranks
    for pid in [task.pid, *ranks]:  # what Slurm sends 90 s before the time limit, to every process
        os.kill(pid, signal.SIGUSR2)
    output = task.communicate(timeout=120)[0]
    assert task.returncode == 130, output[-3000:]  # worker.EXIT_INTERRUPTED
    # The task ended after its ranks: none left running (on Slurm they would be killed with the task,
    # mid-checkpoint, when it requeues).
    assert not [pid for pid in ranks if _alive(pid)], output[-3000:]
    record = json.loads((store.run_dir(out, study.runs[0].id).path / "status.json").read_text())
    assert record["status"] == "interrupted", (record, output[-3000:])
    stopped = run_dir.list_checkpoints()[-1][0]
    assert 100 < stopped < 400 and stopped % 100, stopped  # written at the signal, not a periodic one
    assert "stopped by signal SIGUSR2" in output and run_state(out, study.runs[0].id, []) == "partial"

    requeued = time.time()
    resumed = _task(path, out)  # the requeued task
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output[-3000:]
    assert run_dir.read_summary()["iters"] == 400
    assert json.loads((store.run_dir(out, study.runs[0].id).path / "status.json").read_text())["status"] == "done"
    # Resumed, not restarted: what was logged up to the signal's checkpoint was written before the requeue.
    recs = [json.loads(ln) for ln in run_dir.metrics.read_text().splitlines()]
    assert all(r["time"] < requeued for r in recs if r["step"] <= stopped)
    assert all(r["time"] > requeued for r in recs if r["step"] > stopped)
    keys = [(r["step"], r["split"], r["name"]) for r in recs]
    assert len(keys) == len(set(keys))
