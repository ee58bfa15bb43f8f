"""Slurm executor: one job-array task per unfinished run, through submitit.

Real use, from a login node whose filesystem the compute nodes share::

    mimscale study run configs/studies/paper.yaml --executor slurm --partition gpu \\
        --gpus-per-run 8 --cpus-per-run 64 --timeout-min 4320 --array-parallelism 16

submits ``mimscale-<study>`` as an array (at most 16 tasks at once), prints the job id and returns;
``mimscale study status STUDY_DIR`` follows it, and running the same command again later submits only
what is still unfinished and not already in Slurm's queue (a task that finds its run claimed by a live
task exits at once). Each task claims its run like a local worker does, then

- ``--gpus-per-run 0``: a CPU partition (no GPU is requested); ``1``: pre-trains in the task's process;
- ``--gpus-per-run G > 1``: ``torchrun --standalone --nproc_per_node G -m mimscale.study.slurm CFG`` on
  the task's node (DDP, same code path as one process), then evaluates in the task's process.

Signals. ``scancel`` (SIGTERM): pre-training checkpoints at its next step boundary and the run is recorded
``interrupted``; a later submission resumes it. Before the time limit Slurm sends submitit's signal (USR2
unless ``SUBMITIT_PREEMPT_SIGNAL`` says otherwise, ``signal_delay_s`` = 90 s before the limit): the task
passes it to the training loop as a stop request, the loop checkpoints at its next step boundary, and only
then does submitit requeue the task (tasks are ``submitit.helpers.Checkpointable``, at most
``slurm_max_num_timeout`` = 3 times per task) with the same arguments; the requeued task takes its own claim
back (claims are tagged with the array task id) and resumes from that checkpoint.

Queue. Each submission is appended to ``STUDY_DIR/slurm/submissions.jsonl`` (array job id and the run of
each task), so ``queue_states`` can ask ``squeue`` where each run's task is (``with_queue``: ``queued`` /
``running`` in ``study status``), a resubmission skips runs whose task is still queued or running, and the
claim of a task that Slurm no longer lists (killed on another node) is released at once instead of after
``store.STALE_AFTER_S``. Logs: ``STUDY_DIR/slurm/``.
Without Slurm, ``--slurm-cluster local`` (subprocesses) or ``debug`` (in-process) run the same path.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from mimscale.errors import StudyError
from mimscale.rundir import RunDir, atomic_write_text, parse_jsonl
from mimscale.study import store
from mimscale.study.spec import Study
from mimscale.study.worker import EXIT_CLAIMED, execute, resolve_run_fn, run_evals, with_runtime

try:
    from submitit.helpers import Checkpointable
except ImportError:  # submitit is a dependency, but keep `study status` alive on a broken install
    Checkpointable = object

SUBMISSIONS = "submissions.jsonl"  # in STUDY_DIR/slurm/: {"job", "name", "time", "runs": [run id per task]}
# squeue states of a task that will still run (queued) or is running; any other state, or a task squeue no
# longer lists, has ended.
QUEUED = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD")
RUNNING = ("CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "RESIZING")
SQUEUE_TIMEOUT_S = 30


def torchrun_pretrain(cfg: DictConfig, evals: list[dict], gpus: int) -> dict:
    """Run function for multi-GPU runs: DDP pre-training under torchrun on this node, then evaluations."""
    from mimscale import config as C

    run_dir = RunDir(cfg.run_dir)
    run_dir.path.mkdir(parents=True, exist_ok=True)
    launch = run_dir / "launch.yaml"  # the exact config the ranks load (config.yaml is pretrain's own)
    atomic_write_text(launch, C.dump_yaml(cfg))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
           "-m", "mimscale.study.slurm", str(launch)]
    subprocess.run(cmd, check=True)
    summary = run_dir.read_summary()
    if summary is None:
        raise RuntimeError(f"torchrun finished but wrote no {run_dir.summary}")
    if summary.get("status", "done") == "done":
        run_evals(run_dir, evals, int(cfg.threads) * gpus)
    return summary


def _requeue_signal() -> int:
    """The signal submitit's Slurm jobs get before their time limit (``--signal``) or on preemption."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return getattr(signal, "SIG" + name, signal.SIGUSR2)


class StopRequest:
    """While a run goes on, submitit's requeue signal becomes a stop request for the training loop.

    submitit's own handler requeues at once and exits from inside the training step, losing the steps since
    the last checkpoint (and the worker would record the run as failed). Here the signal is handed to the
    handler that the loop installed for SIGTERM (it checkpoints at its next step boundary and raises
    ``Interrupted``); once the run function has returned, ``requeue`` calls submitit's handler, which asks
    the task's ``checkpoint`` for the resubmission, requeues and exits. A signal that arrives while no loop
    listens (start-up, an evaluation without its own handler) is remembered and acted on at the end.
    """

    def __init__(self):
        self.signum = _requeue_signal()
        self.requested = False
        self.submitit_handler = None
        self._frame = None
        self._term_at_start = None

    def __enter__(self):
        try:
            self.submitit_handler = signal.signal(self.signum, self._handle)
        except ValueError:  # not the main thread (submitit's debug executor in a thread): nothing to catch
            self.submitit_handler = None
            return self
        self._term_at_start = signal.getsignal(signal.SIGTERM)
        return self

    def _handle(self, signum, frame):
        self.requested, self._frame = True, frame
        # os.write, not print: a handler that prints while the interrupted code prints raises "reentrant call".
        os.write(2, f"mimscale: {signal.Signals(signum).name}: stop at the next checkpoint, then requeue\n".encode())
        loop = signal.getsignal(signal.SIGTERM)
        if callable(loop) and loop != self._term_at_start:  # a training loop is listening
            loop(signum, frame)  # recorded as this signal: "stopped by signal SIGUSR2 at step ..."

    def __exit__(self, *exc):
        if self.submitit_handler is not None:
            signal.signal(self.signum, self.submitit_handler)

    def requeue(self) -> None:
        """submitit's handler: checkpoint() -> resubmission pickle, ``scontrol requeue``, exit."""
        if callable(self.submitit_handler):
            self.submitit_handler(self.signum, self._frame)


class StudyTask(Checkpointable):
    """The callable each array task runs: claim, run, record (see module docstring)."""

    def __init__(self, study_dir: str, gpus_per_run: int = 1, run_fn=None):
        self.study_dir, self.gpus_per_run, self.run_fn = study_dir, gpus_per_run, run_fn

    def __call__(self, run_id: str, cfg: DictConfig, evals: list[dict]) -> dict:
        if self.run_fn is None and self.gpus_per_run > 1:
            fn = functools.partial(torchrun_pretrain, gpus=self.gpus_per_run)
        else:
            fn = resolve_run_fn(self.run_fn)
        with StopRequest() as stop:
            code = execute(Path(self.study_dir), run_id, cfg, evals, fn)
        # A task that found its run claimed or finished elsewhere reports what the run's files say.
        state = store.run_state(Path(self.study_dir), run_id, evals)
        if stop.requested and state != "done":
            stop.requeue()  # exits (SystemExit) when submitit requeued the task
        return {"run": run_id, "exit": code, "status": state, "claimed_elsewhere": code == EXIT_CLAIMED}


# ---------------------------------------------------------------------------------------------- the queue


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


def _record_submission(study_dir: Path, job: str, name: str, run_ids: list[str]) -> None:
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
            status = "queued" if state in QUEUED else "running" if state in RUNNING else None
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
        if row["status"] == "running" and q is None:
            path = store.lock_path(study_dir, row["run"])
            if _dead_slurm_claim(store.read_lock(path), path, tasks, listed):
                row["status"] = store.run_state(study_dir, row["run"], study.evals, held=True)
        if q is None:
            continue
        row["slurm_job"] = q["job"]
        row["slurm_state"] = q["state"] + (f" ({q['reason']})" if q["reason"] not in ("None", "") else "")
        if row["status"] in ("pending", "partial", "failed", "interrupted") or (
                row["status"] == "running" and q["status"] == "queued"):
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


# ---------------------------------------------------------------------------------------------- submission


def run_slurm(study: Study, study_dir: Path, *, cluster: str | None = None, partition: str | None = None,
              gpus_per_run: int = 1, cpus_per_run: int = 8, timeout_min: int = 60 * 24 * 3,
              array_parallelism: int = 32, mem_gb: float | None = None, run_fn=None, wait: bool = False,
              retry_failed: bool = True, extra: dict | None = None, log=print) -> list:
    """Submit the unfinished runs as one job array; with ``wait``, return each task's result dict."""
    import submitit
    from submitit.core.utils import FailedJobError

    study_dir = Path(study_dir).resolve()
    (study_dir / "slurm").mkdir(parents=True, exist_ok=True)
    on_slurm = cluster in (None, "slurm")
    queue = (queue_states(study, study_dir) or {}) if on_slurm else {}
    released = release_dead_claims(study, study_dir) if on_slurm else []
    if released:
        log(f"released the claims of {len(released)} run(s) whose Slurm task has ended: {', '.join(released)}")
    todo, in_queue = [], []
    for run in study.runs:
        if run.id in queue:
            in_queue.append(f"{run.id} ({queue[run.id]['job']} {queue[run.id]['state']})")
            continue
        state = store.run_state(study_dir, run.id, study.evals)
        if state in ("pending", "partial") or (state == "failed" and retry_failed):
            todo.append(run)
    if in_queue:
        log(f"{len(in_queue)} run(s) already in Slurm's queue, not submitted again: {', '.join(in_queue)}")
    if not todo:
        log(f"nothing to submit: every run of {study.name} is finished, queued or running")
        return []
    executor = submitit.AutoExecutor(folder=study_dir / "slurm", cluster=cluster)
    threads = max(1, cpus_per_run // max(1, gpus_per_run))  # per rank under torchrun
    params = dict(name=job_name(study), timeout_min=timeout_min, nodes=1, tasks_per_node=1,
                  cpus_per_task=cpus_per_run, slurm_array_parallelism=array_parallelism)
    if gpus_per_run > 0:  # a GPU request on a CPU-only partition is refused by sbatch
        params["gpus_per_node"] = gpus_per_run
    if partition:
        params["slurm_partition"] = partition
    if mem_gb:
        params["mem_gb"] = mem_gb
    extra = dict(extra or {})
    # --requeue: submitit's requeue works even where the cluster's JobRequeue default is 0.
    extra["slurm_additional_parameters"] = {"requeue": True, **extra.get("slurm_additional_parameters", {})}
    executor.update_parameters(**params, **extra)
    task = StudyTask(str(study_dir), gpus_per_run, run_fn)
    cfgs = [with_runtime(r.cfg, store.run_dir(study_dir, r.id), threads) for r in todo]
    try:
        jobs = executor.map_array(task, [r.id for r in todo], cfgs, [study.evals] * len(todo))
    except FailedJobError as e:  # sbatch refused: a bad partition, GPU request, ...
        line = next((ln for ln in str(e).splitlines() if "error" in ln.lower()), str(e).strip()[:300])
        raise StudyError(f"sbatch refused the job array: {line.strip().removeprefix('sbatch: error: ')}") from None
    first = jobs[0].job_id.split("_")[0] if jobs else "?"
    if executor.cluster == "slurm" and jobs:
        _record_submission(study_dir, first, job_name(study), [r.id for r in todo])
    log(f"submitted {len(jobs)} runs of {study.name} as job {first} ({executor.cluster}); "
        f"follow with: mimscale study status {study_dir}")
    if not wait:
        return jobs
    results = []
    for run, job in zip(todo, jobs):
        try:
            results.append(job.result())
        except Exception as e:  # noqa: BLE001 - a task that died outside our recording (e.g. node failure)
            line = (str(e).strip().splitlines() or [type(e).__name__])[-1][:300]
            results.append({"run": run.id, "exit": None, "status": store.run_state(study_dir, run.id, study.evals),
                            "error": line})
    return results


def _ddp_main(argv: list[str]) -> int:
    """Entry point of each torchrun rank: load the launch config and pre-train (rank 0 writes the files)."""
    from mimscale.config import load_config
    from mimscale.train import pretrain

    pretrain(load_config(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(_ddp_main(sys.argv[1:]))
