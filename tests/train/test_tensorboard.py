"""TensorBoard (``track``'s default; ``train.tensorboard=true`` is its older spelling): the event files hold
exactly the scalars of metrics.jsonl (same tags ``split/name``, steps and values, float32 as TensorBoard stores
them), also after a run was killed and resumed. TensorBoard is a dev dependency (the set-up installs it), imported directly like transformers.
Measured on the 2-core CI machine: about 3 s and 9 s.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mimscale.cli import main
from mimscale.rundir import RunDir

TINY = ["model.name=swinv2-cpu-t", "data.source=shapes:size=32,pool=128,seed=0", "data.val_size=32",
        "data.probe_size=16", "train.batch_size=8", "train.recon_images=0", "train.warmup_iters=2",
        "threads=1", "train.log_every=5", "train.tensorboard=true"]


@pytest.fixture(scope="module")
def event_accumulator():
    return EventAccumulator


def _jsonl_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    out = defaultdict(list)
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        out[f"{r['split']}/{r['name']}"].append((r["step"], float(np.float32(r["value"]))))
    return dict(out)


def _event_scalars(accumulator, run: Path) -> dict[str, list[tuple[int, float]]]:
    acc = accumulator(str(RunDir(run).tensorboard), size_guidance={"scalars": 0})  # 0: keep every event
    acc.Reload()
    # summary/*: the finished run's final numbers, logged once at the end (tests/train/test_tracking.py)
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]
            if not tag.startswith("summary/")}


def test_event_files_hold_the_scalars_of_metrics_jsonl(event_accumulator, tmp_path):
    run = tmp_path / "run"
    assert main(["pretrain", *TINY, "train.iters=20", "train.eval_points=2", f"run_dir={run}"]) == 0
    events, jsonl = _event_scalars(event_accumulator, run), _jsonl_scalars(run)
    assert {"train/loss", "train/lr", "val/loss", "train_probe/loss"} <= set(jsonl)
    assert events == jsonl
    assert [s for s, _ in events["val/loss"]] == [0, 20] and len(events["train/loss"]) == 4


# The resumed process's SummaryWriter purges what a killed one logged after its checkpoint (purge_step), and
# every event is flushed as metrics.jsonl is, so TensorBoard shows each step once, with the resumed values.
def test_event_files_match_after_a_sigkill_and_resume(event_accumulator, tmp_path):
    run = tmp_path / "run"
    args = [*TINY, "train.iters=120", "train.ckpt_every=40", "train.eval_points=3", f"run_dir={run}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "mimscale.cli", "pretrain", *args]
    victim = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def logged_past_checkpoint() -> bool:  # steps after the newest checkpoint in both files: to be redone
        ckpts = RunDir(run).list_checkpoints()
        if not ckpts or not (run / "metrics.jsonl").exists():
            return False
        past = [s for s, _ in _jsonl_scalars(run).get("train/loss", []) if s > ckpts[-1][0]]
        return bool(past) and any(s > ckpts[-1][0] for s, _ in _event_scalars(event_accumulator, run).get(
            "train/loss", []))

    t0 = time.time()
    while not logged_past_checkpoint():
        assert victim.poll() is None, f"the run ended before it was killed: {victim.stderr.read()[-2000:]}"
        assert time.time() - t0 < 120
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(RunDir(run).tensorboard.glob("events.out.tfevents.*"))) == 2  # one per process
    events, jsonl = _event_scalars(event_accumulator, run), _jsonl_scalars(run)
    assert events == jsonl
    assert [s for s, _ in events["train/loss"]] == list(range(5, 121, 5))
