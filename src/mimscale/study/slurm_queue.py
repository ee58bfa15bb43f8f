"""What Slurm knows of a study's jobs: the submissions a study directory recorded, and ``squeue``'s view
of them (queued / running per run for ``study status``, claims of tasks that have ended). Torch- and
submitit-free, so ``study status`` asks the queue without importing either.

Each submission is appended to ``STUDY_DIR/slurm/submissions.jsonl`` (array job id and the run of each
task). A run's newest task that squeue still lists says where the run is; a task squeue no longer lists
has ended.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from mimscale.rundir import RunState, parse_jsonl
from mimscale.study import store
from mimscale.study.spec import Study

SUBMISSIONS = "submissions.jsonl"  # in STUDY_DIR/slurm/: {"job", "name", "time", "runs": [run id per task]}
# squeue states of a task that will still run (queued) or is running; any other state, or a task squeue no
# longer lists, has ended.
QUEUED = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD")
RUNNING = ("CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "RESIZING")
SQUEUE_TIMEOUT_S = 30


def job_name(study: Study) -> str:
    return f"mimscale-{study.name}"


def submitted_tasks(study_dir: Path) -> dict[str, str]:
    """Array task id (``<job>_<index>``) -> run id, over every submission of this study directory."""
    path = Path(study_dir) / "slurm" / SUBMISSIONS
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for rec in parse_jsonl(lines):
        for i, run_id in enumerate(rec.get("runs") or []):
            out[f"{rec.get('job')}_{i}"] = run_id
    return out


def record_submission(study_dir: Path, job: str, name: str, run_ids: list[str]) -> None:
    line = json.dumps({"job": job, "name": name, "time": time.time(), "runs": run_ids}) + "\n"
    with open(Path(study_dir) / "slurm" / SUBMISSIONS, "a") as f:  # one O_APPEND write per submission
        f.write(line)


def squeue_tasks(name: str) -> dict[str, tuple[str, str]] | None:
    """``<job>_<index>`` -> (state, reason) of every task of that job name that squeue lists; None when
    there is no squeue or it does not answer (then nothing is known about the queue)."""
    if shutil.which("squeue") is None:
        return None
    # --all: hidden partitions too (a task that squeue does not list is taken to have ended).
    cmd = ["squeue", "--noheader", "--all", "--array", f"--name={name}", "--format=%F|%K|%T|%r"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=SQUEUE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    tasks = {}
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            job, index, state, reason = parts
            index = index if index.isdigit() else "0"  # a one-task array is listed as a plain job
            tasks[f"{job}_{index}"] = (state.split()[0], reason)
    return tasks


def _queue(study: Study, study_dir: Path) -> tuple[dict[str, str], dict[str, tuple[str, str]] | None]:
    """(submitted task -> run id, squeue's tasks of this study's job name or None); squeue is asked only
    when something of this study directory was submitted."""
    tasks = submitted_tasks(study_dir)
    return tasks, (squeue_tasks(job_name(study)) if tasks else {})


def queue_states(study: Study, study_dir: Path, queue=None) -> dict[str, dict] | None:
    """Run id -> {"job", "state", "reason", "status"} for each run whose newest task Slurm still lists
    (``status``: queued | running); None when squeue cannot be asked, {} when nothing was submitted."""
    tasks, listed = queue or _queue(study, study_dir)
    if listed is None:
        return None
    out = {}
    for task, run_id in tasks.items():  # submission order: a later task of a run replaces an earlier one
        if task in listed:
            state, reason = listed[task]
            status = RunState.QUEUED if state in QUEUED else RunState.RUNNING if state in RUNNING else None
            if status:
                out[run_id] = {"job": task, "state": state, "reason": reason, "status": status}
    return out


def _dead_slurm_claim(info: dict | None, path: Path, tasks: dict[str, str], listed: dict) -> bool:
    """A claim held by one of this study's tasks that squeue no longer lists (cancelled, or killed on
    another node) and whose heartbeat has stopped: squeue could be asking another cluster, the heartbeat
    cannot lie. Such a claim would otherwise look live for ``store.STALE_AFTER_S``."""
    owner = str((info or {}).get("owner", ""))
    if not owner.startswith("slurm:"):
        return False
    task = owner[len("slurm:"):]
    task = task if "_" in task else f"{task}_0"
    try:
        quiet_s = time.time() - path.stat().st_mtime
    except OSError:
        return False
    return task in tasks and task not in listed and quiet_s > 3 * store.HEARTBEAT_S


def with_queue(study: Study, study_dir: Path, rows: list[dict]) -> list[dict]:
    """``study status`` rows with Slurm's view: a run whose task waits in the queue is ``queued``, one whose
    task runs is ``running``; finished and failed runs keep what their files say, and a run held by a dead
    task's claim shows what its files say. Adds ``slurm_job`` and ``slurm_state`` (with the pending reason)
    to the rows of queued and running tasks. Rows are unchanged when nothing of this study directory was
    submitted or squeue does not answer."""
    tasks, listed = _queue(study, study_dir)
    if not tasks or listed is None:
        return rows
    queue = queue_states(study, study_dir, (tasks, listed))
    for row in rows:
        q = queue.get(row["run"])
        if row["status"] == RunState.RUNNING and q is None:
            path = store.lock_path(study_dir, row["run"])
            if _dead_slurm_claim(store.read_lock(path), path, tasks, listed):
                row["status"] = store.run_state(study_dir, row["run"], study.run(row["run"]).evals, held=True)
        if q is None:
            continue
        row["slurm_job"] = q["job"]
        row["slurm_state"] = q["state"] + (f" ({q['reason']})" if q["reason"] not in ("None", "") else "")
        if row["status"] in (RunState.PENDING, RunState.PARTIAL, RunState.FAILED, RunState.INTERRUPTED) or (
                row["status"] == RunState.RUNNING and q["status"] == RunState.QUEUED):
            row["status"] = q["status"]
    return rows


def release_dead_claims(study: Study, study_dir: Path) -> list[str]:
    """Remove the claims of this study's tasks that have ended (``_dead_slurm_claim``); returns their runs."""
    tasks, listed = _queue(study, study_dir)
    if not tasks or listed is None:
        return []
    released = []
    for run in study.runs:
        path = store.lock_path(study_dir, run.id)
        info = store.read_lock(path)
        if _dead_slurm_claim(info, path, tasks, listed) and store.read_lock(path) == info:
            path.unlink(missing_ok=True)
            released.append(run.id)
    return released


