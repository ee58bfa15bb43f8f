"""Slurm executor: one job-array task per unfinished run, through submitit.

Real use, from a login node whose filesystem the compute nodes share::

    mimscale study run configs/studies/paper.yaml --executor slurm --partition gpu \\
        --gpus-per-run 8 --cpus-per-run 64 --timeout-min 4320 --array-parallelism 16

submits ``mimscale-<study>`` as an array (at most 16 tasks at once), prints the job id and returns;
``mimscale study status STUDY_DIR`` follows it, and running the same command again later submits only
what is still unfinished (a task that finds its run claimed by a live task exits at once). Each task
claims its run like a local worker does, then

- ``--gpus-per-run 1``: pre-trains in the task's process;
- ``--gpus-per-run G > 1``: ``torchrun --standalone --nproc_per_node G -m mimscale.study.slurm CFG`` on
  the task's node (DDP, same code path as one process), then evaluates in the task's process.

Tasks are ``submitit.helpers.Checkpointable``: on timeout or preemption submitit requeues the task with
the same arguments and pre-training resumes from its last checkpoint; the claim is tagged with the
array task id, so the requeued task takes its own claim back. Logs: ``STUDY_DIR/slurm/``.
Without Slurm, ``--slurm-cluster local`` (subprocesses) or ``debug`` (in-process) run the same path.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from mimscale.rundir import RunDir, atomic_write_text
from mimscale.study import store
from mimscale.study.spec import Study
from mimscale.study.worker import EXIT_CLAIMED, execute, resolve_run_fn, run_evals, with_runtime

try:
    from submitit.helpers import Checkpointable
except ImportError:  # submitit is a dependency, but keep `study status` alive on a broken install
    Checkpointable = object


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


class StudyTask(Checkpointable):
    """The callable each array task runs: claim, run, record (see module docstring)."""

    def __init__(self, study_dir: str, gpus_per_run: int = 1, run_fn=None):
        self.study_dir, self.gpus_per_run, self.run_fn = study_dir, gpus_per_run, run_fn

    def __call__(self, run_id: str, cfg: DictConfig, evals: list[dict]) -> dict:
        if self.run_fn is None and self.gpus_per_run > 1:
            fn = functools.partial(torchrun_pretrain, gpus=self.gpus_per_run)
        else:
            fn = resolve_run_fn(self.run_fn)
        code = execute(Path(self.study_dir), run_id, cfg, evals, fn)
        # A task that found its run claimed or finished elsewhere reports what the run's files say.
        state = store.run_state(Path(self.study_dir), run_id, evals)
        return {"run": run_id, "exit": code, "status": state, "claimed_elsewhere": code == EXIT_CLAIMED}


def run_slurm(study: Study, study_dir: Path, *, cluster: str | None = None, partition: str | None = None,
              gpus_per_run: int = 1, cpus_per_run: int = 8, timeout_min: int = 60 * 24 * 3,
              array_parallelism: int = 32, mem_gb: float | None = None, run_fn=None, wait: bool = False,
              retry_failed: bool = True, extra: dict | None = None, log=print) -> list:
    """Submit the unfinished runs as one job array; with ``wait``, return each task's result dict."""
    import submitit

    study_dir = Path(study_dir).resolve()
    todo = []
    for run in study.runs:
        state = store.run_state(study_dir, run.id, study.evals)
        if state in ("pending", "partial") or (state == "failed" and retry_failed):
            todo.append(run)
    if not todo:
        log(f"nothing to submit: every run of {study.name} is finished or running")
        return []
    executor = submitit.AutoExecutor(folder=study_dir / "slurm", cluster=cluster)
    threads = max(1, cpus_per_run // max(1, gpus_per_run))  # per rank under torchrun
    params = dict(name=f"mimscale-{study.name}", timeout_min=timeout_min, nodes=1, tasks_per_node=1,
                  cpus_per_task=cpus_per_run, slurm_array_parallelism=array_parallelism)
    if gpus_per_run > 0:
        params["gpus_per_node"] = gpus_per_run
    if partition:
        params["slurm_partition"] = partition
    if mem_gb:
        params["mem_gb"] = mem_gb
    executor.update_parameters(**params, **(extra or {}))
    task = StudyTask(str(study_dir), gpus_per_run, run_fn)
    cfgs = [with_runtime(r.cfg, store.run_dir(study_dir, r.id), threads) for r in todo]
    jobs = executor.map_array(task, [r.id for r in todo], cfgs, [study.evals] * len(todo))
    first = jobs[0].job_id.split("_")[0] if jobs else "?"
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
