"""One run of a study: claim it, run it (pre-training then evaluations), record the outcome.

Shared by the local executor (one spawned process per run) and the Slurm executor (one array task per
run). A run function is ``run_fn(cfg, evals) -> summary dict``; the default is
:func:`pretrain_and_evaluate`. Tests and special setups inject their own (a callable importable by
reference, or a ``"module:function"`` string).
"""

from __future__ import annotations

import copy
import importlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mimscale.errors import Interrupted
from mimscale.rundir import RunDir, RunState
from mimscale.study import store

EXIT_DONE, EXIT_FAILED, EXIT_CLAIMED, EXIT_INTERRUPTED = 0, 1, 75, 130
ERROR_TAIL_CHARS = 6000  # of the traceback (plus the log's last lines) kept in error.txt

RunFn = Callable[[DictConfig, list], dict]


def resolve_run_fn(run_fn: RunFn | str | None) -> RunFn:
    if run_fn is None:
        return pretrain_and_evaluate
    if callable(run_fn):
        return run_fn
    module, _, attr = str(run_fn).partition(":")
    if not attr:
        raise ValueError(f"run function '{run_fn}' must be 'module:function'")
    return getattr(importlib.import_module(module), attr)


def with_runtime(cfg: DictConfig, run_dir: Path, threads: int, extra: dict | None = None) -> DictConfig:
    """The run's config with where it goes, how many threads it uses and ``extra`` runtime keys (shared
    prefixes): none of them enters the run id."""
    cfg = copy.deepcopy(cfg)
    OmegaConf.set_readonly(cfg, False)
    cfg.run_dir = str(run_dir)
    cfg.threads = int(threads)
    for key, value in (extra or {}).items():
        OmegaConf.update(cfg, key, value)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def run_evals(run_dir: Path, evals: list[dict], threads: int = 0) -> None:
    """Each eval without a current result (``store.eval_done``: final weights, these settings), through
    mimscale.evaluate.run; a stale result under the same name is replaced."""
    rd = RunDir(run_dir)
    todo = [e for e in evals if not store.eval_done(rd, e)]
    if not todo:
        return
    from mimscale.evaluate import run
    from mimscale.evaluate.config import from_spec

    for spec in todo:
        run(rd.path, from_spec(spec, threads), force=rd.eval_result(spec["name"]).exists())


def pretrain_and_evaluate(cfg: DictConfig, evals: list[dict]) -> dict:
    """The default run function: pretrain (resumes; returns at once if finished), then missing evals."""
    from mimscale.train import pretrain

    summary = pretrain(cfg)
    if summary.get("status", RunState.DONE) == RunState.DONE:
        run_evals(Path(cfg.run_dir), evals, int(cfg.threads))
    return summary


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def execute_claimed(study_dir: Path, run_id: str, cfg: DictConfig, evals: list[dict], run_fn: RunFn) -> int:
    """Run a claimed run and record the attempt; returns an EXIT_* code, never raises for run errors."""
    t0 = time.time()
    d = store.run_dir(study_dir, run_id, cfg)
    d.path.mkdir(parents=True, exist_ok=True)
    try:
        summary = run_fn(cfg, evals)
    except BaseException as e:  # noqa: B902 - every way out of a run must be recorded
        if isinstance(e, (KeyboardInterrupt, Interrupted)):  # pretrain checkpointed on SIGTERM/SIGINT
            store.record_attempt(study_dir, run_id, RunState.INTERRUPTED, cfg, seconds=time.time() - t0)
            return EXIT_INTERRUPTED
        if isinstance(e, SystemExit) and not e.code:
            summary = {}
        else:
            tb = traceback.format_exc()
            line = (f"{type(e).__name__}: {e}".splitlines() or [type(e).__name__])[0][:300]
            log = _log_tail(d.worker_log)
            tail = tb[-ERROR_TAIL_CHARS:] + (f"\n--- last lines of worker.log ---\n{log}\n" if log else "")
            print(tb, file=sys.stderr, flush=True)  # the worker's log (or Slurm's) shows it in context too
            store.record_failure(study_dir, run_id, line, tail, cfg)
            return EXIT_FAILED
    status = str((summary or {}).get("status", RunState.DONE))
    store.record_attempt(study_dir, run_id, status, cfg, seconds=time.time() - t0)
    return EXIT_DONE


def claim_if_unfinished(study_dir: Path, run_id: str, evals: list[dict]) -> store.Claim | None:
    """The claim of a run that still needs work, or None. The state is read again under the claim: between a
    scheduler's look and the claim, another process may have finished the run and released it."""
    claim = store.try_claim(study_dir, run_id)
    if claim is not None and store.run_state(study_dir, run_id, evals, held=True) not in store.RUNNABLE:
        claim.release()
        return None
    return claim


def execute(study_dir: Path, run_id: str, cfg: DictConfig, evals: list[dict], run_fn: RunFn) -> int:
    claim = claim_if_unfinished(study_dir, run_id, evals)
    if claim is None:
        return EXIT_CLAIMED
    with claim:
        return execute_claimed(study_dir, run_id, cfg, evals, run_fn)


# ---------------------------------------------------------------------------------------------- local child


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGTERM this process when its parent dies (even by SIGKILL): pretrain then checkpoints
    and exits instead of running on as an orphan that holds its claim."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the request took effect
        sys.exit(EXIT_INTERRUPTED)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def child_main(study_dir: str, run_id: str, cfg: DictConfig, evals: list[dict], run_fn, threads: int,
               parent: int) -> None:
    """Entry point of a local worker process (spawned, so it starts without the parent's torch state)."""
    _die_with_parent(parent)
    # Own process group: a terminal's Ctrl-C reaches only the parent, which forwards exactly one signal.
    os.setpgrp()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before torch is imported by the run function
        os.environ[var] = str(threads)
    claim = claim_if_unfinished(Path(study_dir), run_id, evals)
    if claim is None:
        sys.exit(EXIT_CLAIMED)
    with claim:
        d = store.run_dir(Path(study_dir), run_id, cfg)
        d.path.mkdir(parents=True, exist_ok=True)  # for worker.log, before the run function makes it
        # Workers run side by side: each one's progress output goes to its run directory, not the terminal.
        log = open(d.worker_log, "a", buffering=1)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"--- {stamp} worker pid {os.getpid()} threads {threads}", flush=True)
        code = execute_claimed(Path(study_dir), run_id, cfg, evals, resolve_run_fn(run_fn))
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)
