"""Slurm executor: one job-array task per unfinished run, through submitit.

Real use, from a login node whose filesystem the compute nodes share::

    mimscale study run studies/paper.yaml --executor slurm --partition gpu \\
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

Shared prefixes. A run that branches from a longer one (``study/sharing.py``) is submitted in an array that
depends on its trunk's task (``--dependency=afterany``): it starts when the trunk has ended and forks from
the trunk's checkpoint at the departure step, or trains alone if the trunk never got there.

Queue (``study/slurm_queue.py``). Each submission is appended to ``STUDY_DIR/slurm/submissions.jsonl`` (array
job id and the run of each task), so ``queue_states`` can ask ``squeue`` where each run's task is (``with_queue``: ``queued`` /
``running`` in ``study status``), a resubmission skips runs whose task is still queued or running, and the
claim of a task that Slurm no longer lists (killed on another node) is released at once instead of after
``store.STALE_AFTER_S``. Logs: ``STUDY_DIR/slurm/``.
Without Slurm, ``--slurm-cluster local`` (subprocesses) or ``debug`` (in-process) run the same path.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from mimscale.errors import Interrupted, StudyError
from mimscale.rundir import RunDir, RunState, atomic_write_text
from mimscale.study import sharing, store
from mimscale.study.slurm_queue import job_name, queue_states, record_submission, release_dead_claims
from mimscale.study.spec import Study
from mimscale.study.worker import EXIT_CLAIMED, execute, resolve_run_fn, run_evals, with_runtime

try:
    from submitit.helpers import Checkpointable
except ImportError:  # submitit is a dependency, but keep `study status` alive on a broken install
    Checkpointable = object


def torchrun_pretrain(cfg: DictConfig, evals: list[dict], gpus: int) -> dict:
    """Run function for multi-GPU runs: DDP pre-training under torchrun on this node, then evaluations.

    Slurm's requeue signal reaches every process of the task. The torchrun agent ignores it (it would die
    of it, and its ranks with it, losing the steps since the last checkpoint); each rank hands it to its
    training loop (``_ddp_main``), the ranks agree on a step, checkpoint and exit, and this function raises
    ``Interrupted``, so the run is recorded interrupted and the requeued task resumes from that checkpoint."""
    from mimscale import config as C

    run_dir = RunDir(cfg.run_dir)
    run_dir.path.mkdir(parents=True, exist_ok=True)
    launch = run_dir / "launch.yaml"  # the exact config the ranks load (config.yaml is pretrain's own)
    atomic_write_text(launch, C.dump_yaml(cfg))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
           "-m", "mimscale.study.slurm", str(launch)]
    signum = _requeue_signal()
    received: list[int] = []
    outer = signal.getsignal(signum)  # StopRequest's, in a Slurm task

    def note(s, frame):
        received.append(s)
        if callable(outer):
            outer(s, frame)

    signal.signal(signum, note)
    try:  # SIG_IGN survives exec: the agent, and the ranks until _ddp_main installs its handler, ignore it
        code = subprocess.run(cmd, preexec_fn=lambda: signal.signal(signum, signal.SIG_IGN)).returncode
    finally:
        signal.signal(signum, outer)
    if code != 0:
        if received:
            steps = run_dir.list_checkpoints()
            raise Interrupted(received[0], steps[-1][0] if steps else 0)
        raise RuntimeError(f"torchrun exited with code {code} (the ranks' output is above)")
    summary = run_dir.read_summary()
    if summary is None:
        raise RuntimeError(f"torchrun finished but wrote no {run_dir.summary}")
    if summary.get("status", RunState.DONE) == RunState.DONE:
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

    def __init__(self, study_dir: str, gpus_per_run: int = 1, run_fn=None, branches: dict | None = None):
        self.study_dir, self.gpus_per_run, self.run_fn = study_dir, gpus_per_run, run_fn
        self.branches = branches or {}  # run id -> train.prefix.Branch: runs that may branch from a trunk

    def __call__(self, run_id: str, cfg: DictConfig, evals: list[dict]) -> dict:
        if self.run_fn is None and self.gpus_per_run > 1:
            fn = functools.partial(torchrun_pretrain, gpus=self.gpus_per_run)
        else:
            fn = resolve_run_fn(self.run_fn)
        cfg = self._as_branch(run_id, cfg)
        with StopRequest() as stop:
            code = execute(Path(self.study_dir), run_id, cfg, evals, fn)
        # A task that found its run claimed or finished elsewhere reports what the run's files say.
        state = store.run_state(Path(self.study_dir), run_id, evals)
        if stop.requested and state != RunState.DONE:
            stop.requeue()  # exits (SystemExit) when submitit requeued the task
        return {"run": run_id, "exit": code, "status": state, "claimed_elsewhere": code == EXIT_CLAIMED}

    def _as_branch(self, run_id: str, cfg: DictConfig) -> DictConfig:
        """A branch starts from its trunk's checkpoint when the job dependency let it start after the trunk
        and the checkpoint is there; otherwise it trains alone (never wrong, only slower) and says why."""
        branches = getattr(self, "branches", {})  # a task pickled by an older version has none
        keys = sharing.branch_keys(Path(self.study_dir), run_id, branches)
        if run_id in branches and not keys:
            b = branches[run_id]
            print(f"mimscale: {run_id}: {b.trunk} has no checkpoint at step {b.step}; training alone",
                  file=sys.stderr, flush=True)
        return with_runtime(cfg, Path(cfg.run_dir), int(cfg.threads), keys) if keys else cfg


# ---------------------------------------------------------------------------------------------- submission


def run_slurm(study: Study, study_dir: Path, *, cluster: str | None = None, partition: str | None = None,
              gpus_per_run: int = 1, cpus_per_run: int = 8, timeout_min: int = 60 * 24 * 3,
              array_parallelism: int = 32, mem_gb: float | None = None, run_fn=None, wait: bool = False,
              retry_failed: bool = True, extra: dict | None = None, share: bool = True, log=print) -> list:
    """Submit the unfinished runs as job arrays; with ``wait``, return each task's result dict.

    ``share`` (Slurm only: it needs job dependencies): runs that branch from a trunk (``study/sharing.py``)
    go in one array per trunk task, submitted with ``--dependency=afterany:<trunk task>``, so they start
    once their trunk has ended (done, failed or cancelled; a requeued trunk keeps them waiting) and branch
    from its checkpoint if it is there. Everything else goes in the first array."""
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
        state = store.run_state(study_dir, run.id, run.evals)
        if state in (RunState.PENDING, RunState.PARTIAL) or (state == RunState.FAILED and retry_failed):
            todo.append(run)
    if in_queue:
        log(f"{len(in_queue)} run(s) already in Slurm's queue, not submitted again: {', '.join(in_queue)}")
    if not todo:
        log(f"nothing to submit: every run of {study.name} is finished, queued or running")
        return []
    branches, _ = sharing.plan(study, share and on_slurm)
    task = StudyTask(str(study_dir), gpus_per_run, run_fn, branches)
    submit = _Submitter(study, study_dir, cluster, task, log, extra, cpus_per_run=cpus_per_run,
                        gpus_per_run=gpus_per_run, timeout_min=timeout_min, array_parallelism=array_parallelism,
                        partition=partition, mem_gb=mem_gb)
    waits = _waits_for(study_dir, todo, branches, queue)
    first = [r for r in todo if r.id not in waits]
    submitted = list(zip(first, submit(first)))
    task_of = {r.id: job.job_id for r, job in submitted}
    groups: dict[str, list] = {}  # trunk task -> the branches that wait for it
    for run in todo:
        if run.id in waits:
            trunk, queued_task = waits[run.id]
            groups.setdefault(queued_task or task_of[trunk], []).append(run)
    for after, runs in groups.items():
        submitted += zip(runs, submit(runs, after=after))
    if not wait:
        return [job for _, job in submitted]
    results = []
    for run, job in submitted:
        try:
            results.append(job.result())
        except Exception as e:  # noqa: BLE001 - a task that died outside our recording (e.g. node failure)
            line = (str(e).strip().splitlines() or [type(e).__name__])[-1][:300]
            results.append({"run": run.id, "exit": None, "status": store.run_state(study_dir, run.id, run.evals),
                            "error": line})
    return results


def _waits_for(study_dir: Path, todo: list, branches: dict, queue: dict) -> dict[str, tuple[str, str | None]]:
    """Branch run id -> (its trunk's run id, the trunk's queued task, or None when the trunk is submitted
    now), for the branches whose trunk has not ended; a branch that already started resumes at once."""
    now = {r.id for r in todo}
    out = {}
    for run in todo:
        b = branches.get(run.id)
        if b is None or store.run_dir(study_dir, run.id).list_checkpoints():
            continue
        if b.trunk in now:
            out[run.id] = (b.trunk, None)
        elif b.trunk in queue:
            out[run.id] = (b.trunk, queue[b.trunk]["job"])
    return out


class _Submitter:
    """Submits runs as one job array with the study's job parameters, optionally after another task."""

    def __init__(self, study: Study, study_dir: Path, cluster: str | None, task: StudyTask, log,
                 extra: dict | None, *, cpus_per_run: int, gpus_per_run: int, timeout_min: int,
                 array_parallelism: int, partition: str | None, mem_gb: float | None):
        import submitit

        self.study, self.study_dir, self.task, self.log = study, study_dir, task, log
        self.executor = submitit.AutoExecutor(folder=study_dir / "slurm", cluster=cluster)
        self.threads = max(1, cpus_per_run // max(1, gpus_per_run))  # per rank under torchrun
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
        self.additional = {"requeue": True, **extra.pop("slurm_additional_parameters", {})}
        self.params = {**params, **extra}

    def __call__(self, runs: list, after: str | None = None) -> list:
        from submitit.core.utils import FailedJobError

        if not runs:
            return []
        additional = {**self.additional, **({"dependency": f"afterany:{after}"} if after else {})}
        self.executor.update_parameters(**self.params, slurm_additional_parameters=additional)
        cfgs = [with_runtime(r.cfg, store.run_dir(self.study_dir, r.id, r.cfg), self.threads,
                             sharing.trunk_keys(self.study, r.id, self.task.branches)) for r in runs]
        try:
            jobs = self.executor.map_array(self.task, [r.id for r in runs], cfgs, [r.evals for r in runs])
        except FailedJobError as e:  # sbatch refused: a bad partition, GPU request, ...
            line = next((ln for ln in str(e).splitlines() if "error" in ln.lower()), str(e).strip()[:300])
            raise StudyError(f"sbatch refused the job array: {line.strip().removeprefix('sbatch: error: ')}") \
                from None
        first = jobs[0].job_id.split("_")[0]
        if self.executor.cluster == "slurm":
            record_submission(self.study_dir, first, job_name(self.study), [r.id for r in runs])
        self.log(f"submitted {len(jobs)} runs of {self.study.name} as job {first} ({self.executor.cluster})"
                 + (f" after {after}, whose run they branch from" if after else "")
                 + f"; follow with: mimscale study status {self.study_dir}")
        return jobs


def _ddp_main(argv: list[str]) -> int:
    """Entry point of each torchrun rank: load the launch config and pre-train (rank 0 writes the files).
    The requeue signal becomes a stop request for the loop, as in a one-process task."""
    from mimscale.config import load_config
    from mimscale.train import pretrain

    try:
        with StopRequest():
            pretrain(load_config(argv[0]))
    except Interrupted as e:
        print(f"mimscale: {e}", file=sys.stderr, flush=True)
        return 128 + e.signum
    return 0


if __name__ == "__main__":
    from mimscale.engine.distributed import exit_process

    exit_process(_ddp_main(sys.argv[1:]))
