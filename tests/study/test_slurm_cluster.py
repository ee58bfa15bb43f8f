"""The Slurm executor against a real Slurm cluster, through submitit's Slurm back-end and the real CLI.

Needs a controller that answers ``sinfo`` with an idle node of at least 2 CPUs: on Debian,
``sudo .ci/setup`` installs slurm-wlm and munge and ``sudo scripts/slurm-cluster.sh start`` starts a
single-node cluster (.ci/run does both). Without one these tests skip with that reason; under MIMSCALE_CI=1
they fail instead. Each test uses its own study name (= job name) and cancels its jobs when it ends.

Measured on the 2-core CI machine (other tests alongside): 14-18 s (array), 21-38 s (scancel), 16-28 s
(preemption), under 1 s each for the others; they run one after another on one xdist worker.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from study_helpers import write_study

from mimscale import config as C
from mimscale.rundir import RunDir, read_json
from mimscale.study import load_study, run_state, store
from mimscale.study import slurm_queue as Q
from mimscale.study.status import status_rows
from mimscale.study.worker import with_runtime

pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("slurm")]

# Real pre-training, small enough for seconds on one CPU (about 25 steps/s): see tests/train/test_pretrain.py.
REAL = {"model.name": "swinv2-cpu-t", "data.source": "shapes:size=32,pool=128,seed=0", "data.val_size": 32,
        "data.probe_size": 16, "train.batch_size": 8, "train.eval_points": 1, "train.recon_images": 0,
        "train.warmup_iters": 2, "train.base_lr": 5.0e-3, "train.log_every": 10}
SLURM_ARGS = ["--executor", "slurm", "--gpus-per-run", "0", "--cpus-per-run", "1"]


@pytest.fixture(scope="module")
def cluster(skip_or_fail):
    """The node's CPU count, once sinfo answers with an idle node (else skip, or fail under CI)."""
    start = "start one: sudo scripts/slurm-cluster.sh start (packages: sudo .ci/setup)"
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        skip_or_fail(f"Slurm's commands (sinfo, sbatch) are not installed; {start}")
    try:
        out = subprocess.run(["sinfo", "--noheader", "--format=%T %c"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        out = None
    if out is None or out.returncode != 0:
        skip_or_fail(f"no Slurm controller answers sinfo; {start}")
    nodes = [ln.split() for ln in out.stdout.splitlines() if ln.strip()]
    usable = [int(cpus) for state, cpus in nodes if state.rstrip("*") in ("idle", "mixed", "allocated")]
    if not usable or max(usable) < 2:
        skip_or_fail(f"sinfo shows no usable node with 2 CPUs ({out.stdout.strip()!r}); {start}")
    return max(usable)


@pytest.fixture
def jobs():
    """Job ids a test submitted; whatever is still queued or running when it ends is cancelled."""
    ids: list[str] = []
    yield ids
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=30)


def _cli(args: list[str], **env) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONUNBUFFERED": "1", **{k: str(v) for k, v in env.items()}}
    return subprocess.run([sys.executable, "-m", "mimscale.cli", "study", *args], env=full, capture_output=True,
                          text=True, timeout=120)


def _submit(study_file: Path, out: Path, jobs: list, *extra, **env) -> tuple[str, str]:
    """`mimscale study run ... --executor slurm` as a user types it; returns (job id, its output)."""
    done = _cli(["run", str(study_file), "--out", str(out), *SLURM_ARGS, *extra], **env)
    assert done.returncode == 0, done.stderr[-3000:]
    m = re.search(r"submitted (\d+) runs of \S+ as job (\d+) \(slurm\)", done.stdout)
    assert m, done.stdout + done.stderr
    jobs.append(m.group(2))
    return m.group(2), done.stdout


def _squeue(job: str) -> dict[str, tuple[str, str]]:
    """Task id -> (state, reason) of a job's tasks that squeue still lists (retried: an empty answer must
    mean that the job has left the queue, never that the controller was busy)."""
    cmd = ["squeue", "--noheader", "--array", f"--jobs={job}", "--format=%i|%T|%r"]
    for _ in range(10):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        if out.returncode == 0:
            return {t: (s, r) for t, s, r in (ln.split("|") for ln in out.stdout.split() if ln.count("|") == 2)}
        if "Invalid job id" in out.stderr:  # no longer known to the controller at all
            return {}
        time.sleep(1)
    raise AssertionError(f"squeue keeps failing: {out.stderr}")


def _wait(cond, timeout: float, what: str, poll: float = 0.2):
    t0 = time.time()
    while True:
        value = cond()
        if value:
            return value
        assert time.time() - t0 < timeout, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(poll)


def _wait_gone(job: str, timeout: float = 120.0) -> None:
    _wait(lambda: not _squeue(job), timeout, f"job {job} to leave the queue", poll=0.5)


def _log(out: Path, job: str) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted((out / "slurm").glob(f"{job}_*_log.*")))


def _status_json(out: Path) -> dict:
    done = _cli(["status", str(out), "--json"])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _checkpoint_steps(run_dir: Path) -> list[int]:
    return [step for step, _ in RunDir(run_dir).list_checkpoints()]


def _metric_times(run_dir: Path) -> list[tuple[int, float]]:
    recs = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["step"], r["split"], r["name"]) for r in recs]
    assert len(keys) == len(set(keys)), "a step was logged twice"
    return [(r["step"], r["time"]) for r in recs]


# ---------------------------------------------------------------------------------------------- array


TOY = {"name": "slurm-array", "base": {"train.iters": 6}, "axes": {"data.fraction": [0.25, 0.5, 1.0]},
       "evals": [{"name": "knn", "task": "knn"}]}


def test_job_array_runs_every_run_status_follows_the_queue_and_a_failure_stops_nothing(
        cluster, jobs, tmp_path, helper_env):
    path = write_study(tmp_path / "s.yaml", TOY)
    study, out = load_study(path), tmp_path / "out"
    failing = study.runs[0].id  # data.fraction 0.25: study_helpers.failing_on_small_data raises
    # One task at a time (--array-parallelism 1), each step 0.4 s: the queue holds the others meanwhile.
    job, _ = _submit(path, out, jobs, "--array-parallelism", "1", "--run-fn",
                     "study_helpers:failing_on_small_data", TOY_STEP_S=0.4)
    sub = [json.loads(ln) for ln in (out / "slurm" / Q.SUBMISSIONS).read_text().splitlines()]
    assert sub[-1]["job"] == job and sub[-1]["runs"] == [r.id for r in study.runs]

    seen: dict[str, set] = {r.id: set() for r in study.runs}  # statuses each run showed while queued

    def snapshot():
        rows = Q.with_queue(study, out, status_rows(study, out))
        for row in rows:
            seen[row["run"]].add((row["status"], (row.get("slurm_state") or "").split(" ")[0]))
        return not _squeue(job)

    _wait(snapshot, 120, "the array to finish", poll=0.1)
    # While the array ran, `study status` showed each run queued (PENDING in squeue), then running
    # (RUNNING in squeue), both from the queue; a run's files alone would have said "pending".
    for run in study.runs[1:]:
        assert ("queued", "PENDING") in seen[run.id], seen
        assert ("running", "RUNNING") in seen[run.id], seen
    assert ("queued", "PENDING") in seen[study.runs[2].id]

    # Done and failed from the run directories once the queue is empty.
    doc = _status_json(out)
    assert doc["counts"] == {"done": 2, "failed": 1}, doc["counts"]
    row = next(r for r in doc["runs"] if r["run"] == failing)
    assert "boom: fraction 0.25 too small" in row["error"] and "slurm_job" not in row
    assert "boom: fraction 0.25 too small" in (store.run_dir(out, failing).path / "error.txt").read_text()
    assert "boom: fraction 0.25 too small" in (out / "slurm" / f"{job}_0_0_log.err").read_text()
    assert all(run_state(out, r.id, study.evals) == "done" for r in study.runs[1:])

    # Resubmitting carries the failed run only; it now succeeds.
    job2, text = _submit(path, out, jobs, "--run-fn", "study_helpers:toy_pretrain")
    assert "submitted 1 runs" in text
    _wait_gone(job2)
    assert _status_json(out)["counts"] == {"done": 3}
    record = json.loads((store.run_dir(out, failing).path / "status.json").read_text())
    assert record["status"] == "done" and record["attempts"] == 2
    again = _cli(["run", str(path), "--out", str(out), *SLURM_ARGS])
    assert again.returncode == 0 and "nothing to submit" in again.stdout


# ---------------------------------------------------------------------------------------------- scancel


CANCEL = {"name": "slurm-cancel", "base": {**REAL, "train.ckpt_every": 50},
          "zip": [{"seed": [0, 1], "train.iters": [20, 400]}]}  # short first: with one free CPU it still ends first


def test_scancel_mid_run_then_resubmit_runs_only_what_is_left_and_resumes(cluster, jobs, tmp_path):
    path = write_study(tmp_path / "s.yaml", CANCEL)
    study, out = load_study(path), tmp_path / "out"
    short_run, long_run = study.runs
    long_dir = store.run_dir(out, long_run.id, long_run.cfg).path
    job, _ = _submit(path, out, jobs, OMP_NUM_THREADS=1)

    def short_done_long_checkpointed():
        return run_state(out, short_run.id, []) == "done" and _checkpoint_steps(long_dir)

    _wait(short_done_long_checkpointed, 120, "the short run to finish and the long one to checkpoint")
    short_summary = (store.run_dir(out, short_run.id).path / "summary.json").read_bytes()
    subprocess.run(["scancel", job], check=True, timeout=30)
    _wait_gone(job)
    # SIGTERM from scancel: the loop checkpointed at its next step and the worker recorded the interruption.
    record = json.loads((long_dir / "status.json").read_text())
    assert record["status"] == "interrupted", record
    stopped_at = _checkpoint_steps(long_dir)[-1]
    assert 50 <= stopped_at < 400 and not (long_dir / "summary.json").exists()
    assert run_state(out, long_run.id, []) == "partial"

    resubmitted = time.time()
    job2, text = _submit(path, out, jobs, OMP_NUM_THREADS=1)
    assert "submitted 1 runs" in text
    sub = json.loads((out / "slurm" / Q.SUBMISSIONS).read_text().splitlines()[-1])
    assert sub["job"] == job2 and sub["runs"] == [long_run.id]
    _wait_gone(job2)
    assert run_state(out, long_run.id, []) == "done"
    assert json.loads((long_dir / "summary.json").read_text())["iters"] == 400
    # Resumed, not restarted: what the first job logged up to its checkpoint was kept (written before the
    # resubmission), everything after it was written by the second job.
    times = _metric_times(long_dir)
    assert all(t < resubmitted for step, t in times if step <= stopped_at)
    assert all(t > resubmitted for step, t in times if step > stopped_at)
    assert any(step > stopped_at for step, _ in times)
    assert json.loads((long_dir / "status.json").read_text())["attempts"] == 2
    assert (store.run_dir(out, short_run.id).path / "summary.json").read_bytes() == short_summary  # not run again


# ---------------------------------------------------------------------------------------------- preemption


PREEMPT = {"name": "slurm-preempt", "base": {**REAL, "train.iters": 300, "train.ckpt_every": 100},
           "evals": [{"name": "knn", "task": "knn", "batch_size": 250}]}


def _release_requeued(job: str) -> bool:
    """Slurm holds a requeued job for 121 s (BeginTime) before it may start again; let it start now."""
    tasks = _squeue(job)
    for task, (state, reason) in tasks.items():
        if state == "PENDING" and reason == "BeginTime":
            subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], capture_output=True,
                           timeout=30)
    return bool(tasks)


def test_time_limit_signal_checkpoints_requeues_and_the_requeued_task_finishes(cluster, jobs, tmp_path):
    path = write_study(tmp_path / "s.yaml", PREEMPT)
    study, out = load_study(path), tmp_path / "out"
    run = study.runs[0]
    run_dir = store.run_dir(out, run.id, run.cfg).path
    # The same run, uninterrupted, beside it (one thread, like the task: --cpus-per-run 1).
    ref_cfg = tmp_path / "ref.yaml"
    ref_cfg.write_text(C.dump_yaml(with_runtime(run.cfg, tmp_path / "ref", 1)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = subprocess.Popen([sys.executable, "-m", "mimscale.cli", "pretrain", "-c", str(ref_cfg)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    job, _ = _submit(path, out, jobs, OMP_NUM_THREADS=1)
    # What Slurm does at the time limit: the job's sbatch file asks for USR2 90 s before it, and requeueing.
    script = (out / "slurm" / f"{job}_submission.sh").read_text()
    assert "#SBATCH --signal=USR2@90" in script and "#SBATCH --requeue" in script
    _wait(lambda: _checkpoint_steps(run_dir), 120, "the first checkpoint (step 100)")
    # The signal itself, now instead of 90 s before a time limit (submitit's own test hook does the same).
    subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=30)
    _wait(lambda: any(s == "PENDING" for s, _ in _squeue(job).values()), 60, "the task to be requeued")
    record = json.loads((run_dir / "status.json").read_text())
    assert record["status"] == "interrupted" and record["attempts"] == 1, record
    signalled_at = _checkpoint_steps(run_dir)[-1]
    assert 100 < signalled_at < 300  # written at the signal, not a periodic checkpoint
    assert "Requeued job" in _log(out, job)
    rows = Q.with_queue(study, out, status_rows(study, out))
    assert rows[0]["status"] == "queued" and rows[0]["slurm_state"].startswith("PENDING"), rows

    # Slurm holds a requeued job 121 s before it may start again; the test lifts that hold, but not within the
    # second of the requeue: a job allocated then gets a credential from the same second as the one revoked at
    # the requeue and slurmd refuses it ("Killing non-startable batch job: Job credential revoked", seen once).
    time.sleep(2.5)

    def requeued_task_recorded() -> bool:
        # Wait on the outcome (the second attempt recorded), not on an empty queue.
        _release_requeued(job)
        record = read_json(run_dir / "status.json") or {}
        return record.get("attempts") == 2 and record.get("status") in ("done", "failed")

    _wait(requeued_task_recorded, 180, "the requeued task to run and finish", poll=0.5)
    _wait_gone(job)
    record = json.loads((run_dir / "status.json").read_text())
    assert record["status"] == "done" and record["attempts"] == 2, record
    assert run_state(out, run.id, study.evals) == "done"  # pre-training and the kNN evaluation
    log = _log(out, job)
    assert log.count("Starting with JobEnvironment") == 2 and "Job completed successfully" in log
    show = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=30).stdout
    assert "Restarts=1" in show, show

    assert reference.wait(timeout=180) == 0, reference.stderr.read()[-2000:]
    got, want = RunDir(run_dir).read_summary(), RunDir(tmp_path / "ref").read_summary()
    assert got["final_val_loss"] == want["final_val_loss"] and got["iters"] == want["iters"] == 300
    times = _metric_times(run_dir)  # one value per step across the two jobs
    assert max(step for step, _ in times) == 300


# ---------------------------------------------------------------------------------------------- claims


def test_a_dead_tasks_claim_is_released_a_live_ones_kept(cluster, tmp_path):
    """A task killed on another node leaves a claim that looks live (another host: no pid to check) until
    its heartbeat is store.STALE_AFTER_S old; squeue says at once that the task has ended."""
    path = write_study(tmp_path / "s.yaml", {**TOY, "name": "slurm-claims", "evals": []})
    study, out = load_study(path), tmp_path / "out"
    from mimscale.study.store import init_study_dir, lock_path

    init_study_dir(study, out)
    (out / "slurm").mkdir()
    Q.record_submission(out, "999999999", Q.job_name(study), [r.id for r in study.runs])
    # Heartbeats stopped 200 s ago (run 0: store still counts it live, for STALE_AFTER_S = 600 s) and now
    # (run 1: its task might be running on a cluster this squeue does not see).
    quiet = time.time() - 200
    for i, run in enumerate(study.runs[:2]):
        lock = lock_path(out, run.id)
        lock.write_text(json.dumps({"pid": 1, "host": "another-node", "start": None, "time": quiet,
                                    "owner": f"slurm:999999999_{i}", "token": str(i)}))
        if i == 0:
            os.utime(lock, (quiet, quiet))
    assert [run_state(out, r.id, []) for r in study.runs] == ["running", "running", "pending"]
    rows = Q.with_queue(study, out, status_rows(study, out))
    assert [r["status"] for r in rows] == ["pending", "running", "pending"]
    assert Q.release_dead_claims(study, out) == [study.runs[0].id]
    assert not lock_path(out, study.runs[0].id).exists() and lock_path(out, study.runs[1].id).exists()


def test_submission_refused_by_sbatch_is_one_line(cluster, tmp_path):
    path = write_study(tmp_path / "s.yaml", {**TOY, "name": "slurm-refused"})
    done = _cli(["run", str(path), "--out", str(tmp_path / "out"), *SLURM_ARGS, "--partition", "no-such-partition"])
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]  # sbatch's own lines come before it
    assert last == "mimscale study: error: sbatch refused the job array: invalid partition specified: " \
                   "no-such-partition", done.stderr



# ---------------------------------------------------------------------------------------------- shared prefixes


SHARE = {"name": "slurm-share", "base": {**REAL, "train.schedule": "step"}, "axes": {"train.iters": [12, 20]}}


def test_a_branch_waits_for_its_trunk_by_job_dependency_and_equals_the_run_trained_alone(cluster, jobs, tmp_path):
    path = write_study(tmp_path / "s.yaml", SHARE)
    study, out = load_study(path), tmp_path / "out"
    short_run, trunk = study.runs  # 12 steps branches at step 10 (7/8 of 12) from the 20-step run
    done = _cli(["run", str(path), "--out", str(out), *SLURM_ARGS], OMP_NUM_THREADS=1)
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = re.findall(r"submitted 1 runs of slurm-share as job (\d+) \(slurm\)(?: after (\S+),)?", done.stdout)
    jobs.extend([first[0], second[0]])
    # The trunk's task: submitit names a one-task array's task by the job id alone.
    assert first[1] == "" and second[1] in (first[0], f"{first[0]}_0"), done.stdout
    script = (out / "slurm" / f"{second[0]}_submission.sh").read_text()
    assert f"#SBATCH --dependency=afterany:{second[1]}" in script
    subs = [json.loads(ln)["runs"] for ln in (out / "slurm" / Q.SUBMISSIONS).read_text().splitlines()]
    assert subs == [[trunk.id], [short_run.id]]
    _wait_gone(second[0])

    assert [run_state(out, r.id, []) for r in study.runs] == ["done", "done"]
    branched = RunDir(store.run_dir(out, short_run.id).path).read_summary()
    assert branched["branched_from"]["step"] == 10 and branched["branched_from"]["trunk"].endswith(trunk.id)
    assert 10 in _checkpoint_steps(store.run_dir(out, trunk.id).path)  # kept for the branch
    # The same run trained alone (one thread, like the task): the same held-out loss, bit for bit.
    alone = tmp_path / "alone"
    assert subprocess.run([sys.executable, "-m", "mimscale.cli", "study", "run", str(path), "--out", str(alone),
                           "--no-share", "--workers", "1", "--threads", "1"], capture_output=True,
                          timeout=300).returncode == 0
    want = RunDir(store.run_dir(alone, short_run.id).path).read_summary()
    assert branched["final_val_loss"] == want["final_val_loss"] and want["branched_from"] is None
