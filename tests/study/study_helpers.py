"""Run functions for the study runner's tests: small, real, deterministic stand-ins for pre-training.

They live in an importable module (not a test file) because the runner calls them by reference in
spawned worker processes, submitit jobs and `python -m mimscale.study` subprocesses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from mimscale import config as C


def _log(path: str | None, line: str) -> None:
    if path:
        with open(path, "a") as f:  # O_APPEND: lines from concurrent processes never interleave
            f.write(line + "\n")


def toy_pretrain(cfg: DictConfig, evals: list) -> dict:
    """A resumable "training": state x follows a deterministic recurrence seeded by the run id.

    One step = one update + a checkpoint (JSON, atomic) + a metrics line, so a kill at any point loses at
    most the step in flight, and a resumed run ends with exactly the state an uninterrupted one has.
    Env: TOY_STEP_S (sleep per step), TOY_LOG (file that gets one line per executed step).
    """
    from mimscale.rundir import atomic_write_json
    from mimscale.study.store import read_json

    run_dir = Path(cfg.run_dir)
    summary = read_json(run_dir / "summary.json")
    if summary is None:
        rid = C.run_id(cfg)
        total = int(cfg.train.iters)
        ckpts = sorted((run_dir / "checkpoints").glob("step_*.pt"))
        state = json.loads(ckpts[-1].read_text()) if ckpts else {"step": 0, "x": int(rid, 16) % 1000 / 1000}
        step, x = state["step"], state["x"]
        with open(run_dir / "metrics.jsonl", "a") as metrics:
            while step < total:
                time.sleep(float(os.environ.get("TOY_STEP_S", "0")))
                x = (x * 1.37 + 0.11 * cfg.data.fraction) % 1.0
                step += 1
                _log(os.environ.get("TOY_LOG"), f"{rid} {step} {os.getpid()}")
                atomic_write_json(run_dir / "checkpoints" / f"step_{step:07d}.pt", {"step": step, "x": x})
                (run_dir / "checkpoints" / f"step_{step - 1:07d}.pt").unlink(missing_ok=True)
                metrics.write(json.dumps({"step": step, "split": "val", "name": "loss", "value": x,
                                          "time": time.time()}) + "\n")
                metrics.flush()
        summary = {"status": "done", "final_val_loss": x, "best_val_loss": x, "params": 1000,
                   "data_size": int(1000 * cfg.data.fraction), "iters": total, "model": cfg.model.name,
                   "images_per_s": 123.0}
        atomic_write_json(run_dir / "summary.json", summary)
    from mimscale.evaluate.config import spec_identity

    for e in evals:  # what mimscale.evaluate.run records of a result: what it evaluated, with which settings
        path = run_dir / "eval" / f"{e['name']}.json"
        if not path.exists():
            atomic_write_json(path, {"metrics": {"top1": round(1 - summary["final_val_loss"], 6)},
                                     "identity": spec_identity(e), "step": summary["iters"]})
    return summary


def failing_on_small_data(cfg: DictConfig, evals: list) -> dict:
    """Raises for data.fraction < 0.5 (after some output, like a real crash mid-run); else toy_pretrain."""
    if cfg.data.fraction < 0.5:
        print("loading data ...", flush=True)
        raise ValueError(f"boom: fraction {cfg.data.fraction} too small")
    return toy_pretrain(cfg, evals)


def counting(cfg: DictConfig, evals: list) -> dict:
    """Logs one line per execution (TOY_LOG) and writes a summary; checks that no one else runs it too."""
    from mimscale.rundir import atomic_write_json

    run_dir = Path(cfg.run_dir)
    marker = run_dir / "in_progress"
    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # raises if another process is in here
    os.close(fd)
    _log(os.environ.get("TOY_LOG"), f"{C.run_id(cfg)} {os.getpid()}")
    time.sleep(float(os.environ.get("TOY_STEP_S", "0")))
    summary = {"status": "done", "final_val_loss": 0.5, "best_val_loss": 0.5, "params": 1, "data_size": 1,
               "iters": int(cfg.train.iters)}
    atomic_write_json(run_dir / "summary.json", summary)
    marker.unlink()
    return summary


def write_study(path: Path, doc: dict) -> Path:
    import yaml

    path = Path(path)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def study_cli(args: list[str], **env) -> subprocess.Popen:
    """`python -m mimscale.study ARGS` as a real process (what a user's terminal runs)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **{k: str(v) for k, v in env.items()}}
    return subprocess.Popen([sys.executable, "-m", "mimscale.study", *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def toy_log(path: Path) -> list[tuple[str, int]]:
    """(run id, step or pid) per executed step / execution, from a TOY_LOG file."""
    if not Path(path).exists():
        return []
    return [(ln.split()[0], int(ln.split()[1])) for ln in Path(path).read_text().splitlines() if ln.strip()]


def race_for_claim(study_dir: str, barrier, results, done) -> None:
    """Process target: all racers try to claim one run at the same moment; report whether we won.

    The winner holds its claim until every racer has tried (``done``): a claim whose process has exited is
    stale and rightly broken, so a fixed hold time let a racer delayed by the scheduler win a second time."""
    from mimscale.study.store import try_claim

    barrier.wait()
    claim = try_claim(Path(study_dir), "contested")
    results.put(claim is not None)
    done.wait(timeout=60)


def wait_until(cond, proc, timeout: float = 60.0) -> None:
    """Poll ``cond`` while ``proc`` is alive; fail with its output if it dies or time runs out."""
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.05)


def kill_all(proc, out: Path) -> None:
    """SIGKILL the runner and every worker at once (what losing the machine looks like)."""
    pids = [proc.pid] + [json.loads(p.read_text())["pid"] for p in (out / "locks").glob("*.lock")
                         if p.read_text().strip()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
