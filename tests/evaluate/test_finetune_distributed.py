"""Fine-tuning at scale: torchrun with 2 CPU processes (gloo), and gradient accumulation, equal one process at
the same global batch; a fine-tuning killed with SIGKILL resumes from its last epoch and ends where an
uninterrupted one ends; SIGTERM checkpoints at the next step."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from eval_runs import simmim_state, write_run

from mimscale.rundir import RunDir

# No randomness beyond the data order and the per-image crops (mixup, erasing, RandAugment and drop path
# draw per process), so one process and two must agree up to float summation order.
ARGS = ["task=finetune", "train_source=shapes:size=32,pool=96,seed=0,split=probe",
        "test_source=shapes:size=32,pool=40,seed=0,split=test", "batch_size=16", "epochs=3", "warmup_epochs=1",
        "mixup=0", "cutmix=0", "reprob=0", "randaug_n=0", "drop_path=0", "label_smoothing=0", "threads=1",
        "base_lr=5e-3"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("runs") / "vit", "vit-cpu-s", simmim_state("vit-cpu-s"), step=3)


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _finetune(run, *extra, nproc: int = 1, **kw):
    cmd = [sys.executable, "-m", "mimscale.cli", "finetune", str(run), *ARGS, *extra]
    if nproc > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
               "127.0.0.1", "--master_port", str(port), "-m", "mimscale.cli", "finetune", str(run), *ARGS, *extra]
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _result(run, name) -> dict:
    return json.loads(RunDir(run).eval_result(name).read_text())


def _curve(res) -> list[float]:
    return [h["train_loss"] for h in res["history"]] + [h["top1"] for h in res["history"]]


def test_two_processes_and_accumulation_equal_one_process(run):
    procs = [_finetune(run, "name=one"), _finetune(run, "name=accum", "accum_steps=2")]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    ddp = _finetune(run, "name=ddp", nproc=2)
    out, err = ddp.communicate(timeout=600)
    assert ddp.returncode == 0, err
    one, accum, two = _result(run, "one"), _result(run, "accum"), _result(run, "ddp")
    assert "2 process(es) x 1 accumulation" in two["notes"] and "1 process(es) x 2 accumulation" in accum["notes"]
    assert len(one["history"]) == 3
    assert _curve(accum) == pytest.approx(_curve(one), rel=1e-4, abs=1e-5)
    assert _curve(two) == pytest.approx(_curve(one), rel=1e-4, abs=1e-5)
    assert not RunDir(run).eval_state("ddp").exists()  # removed once the result is written


def _wait_for_state(rd: RunDir, name: str, proc) -> None:
    t0 = time.time()
    while not rd.eval_state(name).exists():  # written after the first epoch
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() - t0 < 300
        time.sleep(0.05)


def test_sigkill_resumes_from_the_last_epoch_and_sigterm_checkpoints_at_a_step(run):
    reference = _finetune(run, "name=ref")
    assert reference.wait(timeout=600) == 0
    rd, ref = RunDir(run), _curve(_result(run, "ref"))

    victim = _finetune(run, "name=killed")
    _wait_for_state(rd, "killed", victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    resumed = _finetune(run, "name=killed")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0 and "resuming at step" in err, err
    assert _curve(_result(run, "killed")) == ref  # bit-identical to the uninterrupted fine-tuning

    longer = "epochs=12"  # the signal must find it running: it arrives within an epoch of the first state
    reference = _finetune(run, "name=ref12", longer)
    assert reference.wait(timeout=600) == 0
    stopped = _finetune(run, "name=termed", longer)
    _wait_for_state(rd, "termed", stopped)
    stopped.send_signal(signal.SIGTERM)
    _, err = stopped.communicate(timeout=300)
    assert stopped.returncode == 128 + signal.SIGTERM and "checkpoint written" in err, err
    again = _finetune(run, "name=termed", longer)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0 and "resuming at step" in err
    assert _curve(_result(run, "termed")) == _curve(_result(run, "ref12"))
