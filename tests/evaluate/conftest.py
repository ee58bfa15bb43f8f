"""Fixtures of the evaluation tests; the helpers live in eval_runs.py beside this file, which pytest puts
on sys.path (``pythonpath`` in pyproject.toml)."""

import fcntl
from pathlib import Path

import eval_runs
import pytest
import torch
from eval_runs import pretrain_run

assert Path(eval_runs.__file__).resolve().parent == Path(__file__).resolve().parent, (
    f"'eval_runs' was imported from {eval_runs.__file__}, not from tests/evaluate")


@pytest.fixture(scope="session")
def pretrained_run(tmp_path_factory) -> Path:
    """A SimMIM-pre-trained vit-cpu-s run directory, built once and shared by the xdist workers."""
    root = tmp_path_factory.getbasetemp()
    shared = root.parent if root.name.startswith("popen-gw") else root  # xdist: one base dir per worker
    run_dir = shared / "mimscale-eval-pretrained"
    with open(shared / "mimscale-eval-pretrained.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker waits, then finds the finished run
        if not list((run_dir / "checkpoints").glob("step_*.pt")):
            before = torch.get_num_threads()
            torch.set_num_threads(1)  # see _one_thread
            try:
                pretrain_run(run_dir)
            finally:
                torch.set_num_threads(before)
    return run_dir


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread per test: ``make test`` runs two xdist workers on two cores, and tiny models
    under two workers x two threads ran ~50x slower than with one thread each (oversubscription)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
