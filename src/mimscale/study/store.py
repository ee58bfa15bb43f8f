"""The study directory on disk: ``study.yaml``, run claims (lock files) and each run's state.

::

    STUDY_DIR/study.yaml        normalised definition + run list; written once, only its evals updated
    STUDY_DIR/runs/<label>-<run_id>/   the run directory (pretrain's cfg.run_dir) + status.json, error.txt,
                                worker.log written by the study runner; <label> is model, data fraction
                                and length (``vit-cpu-m_f0.1_it2000``); a study started before names were
                                readable has runs/<run_id>/, found the same way (``run_dir``)
    STUDY_DIR/locks/<id>.lock   a live claim: JSON {pid, host, start, owner, time}

Claims are ``os.open(O_CREAT | O_EXCL)`` files, atomic on local and NFS filesystems, so two
``study run`` processes (or two hosts sharing the directory) never run one run twice. A claim is
stale when its process is gone (same host) or its heartbeat (mtime) is older than STALE_AFTER_S
(another host, where pids mean nothing).

This module imports neither torch nor the training code: ``study status`` and worker start-up stay fast.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import yaml

from mimscale.errors import StudyError
from mimscale.rundir import (
    STUDY_FILE,
    STUDY_LOCKS,
    STUDY_RUNS,
    RunDir,
    RunState,
    atomic_write_json,
    atomic_write_text,
    create_exclusive,
    find_run_dir,
    read_json,
    run_dir_name,
)
from mimscale.study.spec import Study, parse_study

HEARTBEAT_S = 30.0  # a claim's mtime is refreshed this often while its run goes on
STALE_AFTER_S = 600.0  # a claim from another host without a heartbeat this long is abandoned
UNREADABLE_GRACE_S = 60.0  # a claim still empty after this long was left by a crash mid-creation


def run_dir(study_dir: Path, run_id: str, cfg=None) -> RunDir:
    """The directory of run ``run_id``: the one that exists, readable (``<label>-<id>``) or named by the id
    alone (a study started by an older mimscale keeps its names); else the readable name of ``cfg`` (the run's
    config), or, without one, the id alone. Every lookup of a run's directory by its id goes through here."""
    runs = Path(study_dir).resolve() / STUDY_RUNS
    found = find_run_dir(runs, run_id)
    if found is not None:
        return RunDir(found)
    return RunDir(runs / (run_dir_name(cfg, run_id) if cfg is not None else run_id))


# ---------------------------------------------------------------------------------------------- study.yaml


def _study_doc(study: Study) -> dict:
    return {"name": study.name, "description": study.description, **study.definition(),
            "runs": [{"id": r.id, "axes": r.axes} for r in study.runs]}


def init_study_dir(study: Study, study_dir: Path) -> None:
    """Write study.yaml, or check that the one there defines the same runs (else StudyError, no writes) and
    record this study's evals in it (adding, changing or removing an evaluation never re-trains a run).

    Creation is a hard link of a finished temp file, which fails if the name exists: two processes
    starting the same directory at once cannot both "create" it with different definitions.
    """
    study_dir = Path(study_dir)
    path = study_dir / STUDY_FILE
    if study_dir.exists() and not study_dir.is_dir():
        raise StudyError(f"{study_dir} exists and is not a directory")
    if not path.exists():
        if study_dir.is_dir() and (study_dir / STUDY_RUNS).is_dir() and any((study_dir / STUDY_RUNS).iterdir()):
            raise StudyError(f"{study_dir} holds runs but no study.yaml; point the study at another --out")
        # If someone else created it first, theirs stays and is compared below.
        create_exclusive(path, lambda f: f.write(yaml.safe_dump(_study_doc(study), sort_keys=False).encode()))
    existing = load_study_dir(study_dir)
    if existing.pretraining() != study.pretraining():
        what = next(k for k, v in study.pretraining().items() if existing.pretraining()[k] != v)
        raise StudyError(f"{study_dir} holds study '{existing.name}' with a different definition "
                         f"(differs in '{what}'); use another --out or the original study file")
    if existing.evals != study.evals:
        # Evaluations are not part of what the runs are: the directory takes the new list (study status and
        # results read it), and each run evaluates only what it has no current result for.
        atomic_write_text(path, yaml.safe_dump(_study_doc(study), sort_keys=False))
    (study_dir / STUDY_RUNS).mkdir(exist_ok=True)
    (study_dir / STUDY_LOCKS).mkdir(exist_ok=True)


def load_study_dir(study_dir: Path) -> Study:
    """The study defined by ``STUDY_DIR/study.yaml`` (re-expanded: configs are not stored twice)."""
    path = Path(study_dir) / STUDY_FILE
    if not path.is_file():
        raise StudyError(f"{study_dir} is not a study directory (no study.yaml)")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise StudyError(f"cannot parse {path}: {' '.join(str(e).split())[:200]}") from None
    study = parse_study(doc, str(path))
    study.out = str(study_dir)
    stored = [r.get("id") for r in doc.get("runs") or [] if isinstance(r, dict)]
    if stored and stored != [r.id for r in study.runs]:
        # Same definition, other ids: this mimscale resolves configs differently (a config key was added or
        # a default changed), so the finished runs would silently count as pending and be redone.
        raise StudyError(f"{path} lists other run ids than this mimscale version computes from the same "
                         f"definition (the config schema changed?); finish it with the version that "
                         f"started it or start a new study directory")
    return study


# ---------------------------------------------------------------------------------------------- claims


def _proc_start(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (Linux), which tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else fields[19]  # a zombie has exited: it holds nothing


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if Path("/proc").is_dir():
        now = _proc_start(pid)
        return now is not None and (start is None or now == start)
    return True


def owner_tag() -> str:
    """Who holds a claim: a Slurm array task keeps its tag across requeues, so it can take its claim back."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if job:
        return f"slurm:{job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    job = os.environ.get("SLURM_JOB_ID")
    return f"slurm:{job}" if job else f"pid:{os.getpid()}"


def lock_path(study_dir: Path, run_id: str) -> Path:
    return Path(study_dir) / STUDY_LOCKS / f"{run_id}.lock"


def read_lock(path: Path) -> dict | None:
    return read_json(path)


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def lock_is_live(path: Path, info: dict | None = None) -> bool:
    if not path.exists():
        return False
    info = read_lock(path) if info is None else info
    if info is None:  # being written right now, or left empty by a crash
        return _age(path) < UNREADABLE_GRACE_S
    if info.get("host") == socket.gethostname():
        return _pid_alive(int(info.get("pid", -1)), info.get("start"))
    return _age(path) < STALE_AFTER_S


def _break_stale(path: Path, mine: str) -> bool:
    """Remove ``path`` if it is stale (or our own from an earlier attempt); True if the caller may retry."""
    info = read_lock(path)
    own = info is not None and info.get("owner") == mine and not mine.startswith("pid:")
    if not own and lock_is_live(path, info):
        return False
    breaker = path.with_name(path.name + ".break")
    try:
        fd = os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        if _age(breaker) > UNREADABLE_GRACE_S:  # a breaker that died mid-way
            breaker.unlink(missing_ok=True)
        return False
    try:
        # Under the breaker, re-read: only the very claim we judged stale is removed, never a fresh one
        # that another process created after breaking it first. Unreadable (None) matches nothing: a claim
        # gone when first read and one just created, still empty, both read None, and removing the fresh
        # one gave two winners. An unreadable claim is removed only when old (its writer died mid-write).
        now = read_lock(path)
        if now == info and (now is not None or _age(path) >= UNREADABLE_GRACE_S):  # a gone file's age is 0
            path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)
        breaker.unlink(missing_ok=True)


class Claim:
    """A held lock file; a daemon thread refreshes its mtime so other hosts see it is alive."""

    def __init__(self, path: Path, info: dict):
        self.path, self.info = path, info
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        if read_lock(self.path) == self.info:
            self.path.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def try_claim(study_dir: Path, run_id: str) -> Claim | None:
    """Claim a run for this process, or None if a live claim exists."""
    path = lock_path(study_dir, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "start": _proc_start(os.getpid()),
            "owner": owner_tag(), "time": time.time(), "token": uuid.uuid4().hex}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _break_stale(path, info["owner"]):
                continue
            return None
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(info))
            f.flush()
            os.fsync(f.fileno())
        return Claim(path, info)
    return None


# ---------------------------------------------------------------------------------------------- run state

RUNNABLE = (RunState.PENDING, RunState.PARTIAL, RunState.FAILED)


def eval_done(d: RunDir, spec: dict | str) -> bool:
    """Whether a study eval entry (or, given a name, any evaluation of that name) has a current result."""
    if isinstance(spec, str):  # a name: any current result of that name
        return d.eval_is_current(spec)
    from mimscale.evaluate.config import spec_identity  # omegaconf only, no torch

    return d.eval_is_current(spec["name"], spec_identity(spec))


def pretrained(d: RunDir) -> bool:
    """Whether the run's pre-training finished (summary.json, status done): only evaluations can be left."""
    summary = d.read_summary()
    return summary is not None and str(summary.get("status", RunState.DONE)) == RunState.DONE


def evals_left(d: RunDir, evals: list[dict] | list[str]) -> list[str]:
    """The names of ``evals`` (study eval entries or plain names) without a current result in ``d``."""
    return [e["name"] if isinstance(e, dict) else e for e in evals if not eval_done(d, e)]


def run_state(study_dir: Path, run_id: str, evals: list[dict] | list[str], held: bool = False) -> str:
    """A ``RunState`` (pending | partial | running | done | failed), or a finished run's own summary status
    when that is not "done".

    A live claim wins (the files may be mid-update); then summary.json (finished; "done" needs each of
    ``evals``, study eval specs or plain names, to have a current result), then the runner's status.json
    (failed), then checkpoints (partial: a rerun resumes). ``held``: the caller holds the claim
    and asks what is left to do.
    """
    if not held and lock_is_live(lock_path(study_dir, run_id)):
        return RunState.RUNNING
    d = run_dir(study_dir, run_id)
    summary = d.read_summary()
    if summary is not None:
        status = str(summary.get("status", RunState.DONE))
        if status != RunState.DONE:
            return status
        if not evals_left(d, evals):
            return RunState.DONE
    record = read_json(d.status)
    if record is not None and record.get("status") == RunState.FAILED:
        return RunState.FAILED
    if summary is not None or d.list_checkpoints():
        return RunState.PARTIAL
    return RunState.PENDING


def resume_note(study_dir: Path, run_id: str, evals: list[dict] | list[str], state: str) -> str:
    """What a (re)start of a runnable run will do, for the console: "" for a fresh run, "evaluations left:
    ft" for a finished pre-training with evaluations to run (nothing is re-trained), else the state."""
    if state == RunState.PENDING:
        return ""
    d = run_dir(study_dir, run_id)
    if state == RunState.PARTIAL and pretrained(d):
        return f" (pre-trained; evaluations left: {', '.join(evals_left(d, evals))})"
    return f" ({state})"


def record_attempt(study_dir: Path, run_id: str, status: str, cfg=None, **extra) -> None:
    """status.json: the last attempt's outcome (done | failed | interrupted), with attempt count and host.
    ``cfg``: the run's config, which names its directory if the run has none yet."""
    d = run_dir(study_dir, run_id, cfg)
    previous = read_json(d.status) or {}
    atomic_write_json(d.status, {"status": status, "attempts": int(previous.get("attempts", 0)) + 1,
                                          "host": socket.gethostname(), "pid": os.getpid(),
                                          "time": time.time(), **extra})
    if status == RunState.DONE:
        d.error.unlink(missing_ok=True)


def record_failure(study_dir: Path, run_id: str, error_line: str, tail: str, cfg=None) -> None:
    d = run_dir(study_dir, run_id, cfg)
    atomic_write_text(d.error, tail if tail.endswith("\n") else tail + "\n")
    record_attempt(study_dir, run_id, RunState.FAILED, cfg, error=error_line)


def failure_line(study_dir: Path, run_id: str) -> str:
    record = read_json(run_dir(study_dir, run_id).status) or {}
    return str(record.get("error", ""))
