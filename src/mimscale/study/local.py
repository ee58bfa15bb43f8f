"""Local executor: N worker processes on this machine, CPU threads divided between them.

Each run gets its own spawned process (a crash or OOM kill takes down one run, not the study, and every
run starts with fresh torch state). The parent only schedules: it picks runnable runs (longest first,
so the last runs to finish are short ones), starts a worker, and reaps it. The worker claims the run
(store.try_claim), so several ``study run`` processes may share one directory; runs claimed elsewhere
are waited for, and picked up if their claim goes stale.

SIGINT/SIGTERM to the parent: no new runs start; SIGTERM is sent once to every worker, whose pretrain
checkpoints and exits; the parent then returns "interrupted". A second signal kills the workers. A worker starts
with SIGINT ignored: a terminal's Ctrl-C, which reaches the whole foreground group, finds it still importing
(before it moves to its own process group) and would print a traceback there; it stops by the parent's SIGTERM
instead (silently, if it has not started its run yet).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from mimscale.rundir import RunState
from mimscale.study import sharing, store
from mimscale.study.cost import clock, run_cost
from mimscale.study.progress import PROGRESS_EVERY_S, ConsoleView, StudyProgress
from mimscale.study.spec import Study, StudyRun
from mimscale.study.worker import (
    EXIT_CLAIMED,
    EXIT_DONE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    child_main,
    with_runtime,
)


@dataclass
class RunReport:
    done: list[str] = field(default_factory=list)  # finished by this call
    failed: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already finished before this call
    stopped: bool = False  # a signal stopped the study

    def exit_code(self) -> int:
        # A run interrupted without the study being stopped (e.g. its worker got SIGTERM) is unfinished too.
        return 130 if self.stopped else (1 if self.failed or self.interrupted else 0)


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def threads_per_worker(workers: int, threads: int | None = None) -> int:
    return int(threads) if threads else max(1, available_cpus() // max(1, workers))


def _costs(runs: list[StudyRun]) -> dict[str, float]:
    # Cost is images x training FLOPs per image (a big model's short run can outlast a small model's long
    # one); images alone when FLOPs cannot be counted.
    def cost(r: StudyRun) -> float:
        c = run_cost(r)
        return c["flops"] if c["flops"] is not None else float(c["images"] or 0)

    return {r.id: cost(r) for r in runs}


def _schedule_order(runs: list[StudyRun], costs: dict[str, float]) -> list[StudyRun]:
    # Longest-first packing: with N workers the study ends soonest when long runs start early.
    return sorted(runs, key=lambda r: (-costs[r.id], r.index))


class _Signals:
    """Parent-side SIGINT/SIGTERM: first one stops scheduling and is forwarded, a second kills workers."""

    def __init__(self, children: Callable[[], list]):
        self.children = children
        self.count = 0
        self.previous: dict = {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: the caller handles signals
                pass
        return self

    def _handle(self, signum, frame):
        self.count += 1
        for proc in self.children():
            try:  # SIGTERM, not the SIGINT a worker still importing ignores (see _start_ignoring_sigint)
                os.kill(proc.pid, signal.SIGTERM if self.count == 1 else signal.SIGKILL)
            except (ProcessLookupError, TypeError):
                pass

    def __exit__(self, *exc):
        for s, h in self.previous.items():
            signal.signal(s, h)


def run_local(study: Study, study_dir: Path, workers: int = 1, threads: int | None = None, run_fn=None,
              retry_failed: bool = True, wait_for_others: bool = True, poll_s: float = 1.0,
              log: Callable[[str], None] | None = None, share: bool = True,
              progress_s: float = PROGRESS_EVERY_S) -> RunReport:
    """Run every unfinished run of ``study`` in ``study_dir`` (initialised) with ``workers`` processes.

    ``share``: runs that differ only in length train their common prefix once (``study/sharing.py``): a
    branch starts when its trunk has checkpointed the step where the two part. ``log``: where the runner's
    messages go (default: stderr, with the study's progress view, ``study/progress.py``, under them;
    ``progress_s``: how often that view writes a line when stderr is not a terminal)."""
    tracker = StudyProgress(len(study.runs), max(1, int(workers)))
    view = ConsoleView(tracker, every_s=progress_s) if log is None else None
    log = log or view.log
    try:
        return _run_local(study, Path(study_dir).resolve(), workers, threads, run_fn, retry_failed,
                          wait_for_others, poll_s, log, share, tracker, view)
    finally:
        if view is not None:
            view.close()


def _run_local(study: Study, study_dir: Path, workers: int, threads: int | None, run_fn, retry_failed: bool,
               wait_for_others: bool, poll_s: float, log: Callable[[str], None], share: bool,
               tracker: StudyProgress, view: ConsoleView | None) -> RunReport:
    workers = max(1, int(workers))
    nthreads = threads_per_worker(workers, threads)
    report = RunReport()
    total = len(study.runs)
    costs = _costs(study.runs)
    order = _schedule_order(study.runs, costs)
    for r in order:
        if store.run_state(study_dir, r.id, r.evals) not in (*store.RUNNABLE, RunState.RUNNING):
            report.skipped.append(r.id)
            tracker.done += 1
        else:
            ckpts = store.run_dir(study_dir, r.id, r.cfg).list_checkpoints()
            tracker.add_pending(r, ckpts[-1][0] if ckpts else 0)
    if report.skipped:
        log(f"{len(report.skipped)} of {total} runs already finished; skipping them")
    ctx = mp.get_context("spawn")
    active: dict[str, tuple] = {}  # run id -> (process, run, start time)
    attempted: set[str] = set()  # runs this call already ran (a failure is retried by the next call only)

    def finished_count() -> int:
        return len(report.skipped) + len(report.done) + len(report.failed)

    branches, _ = sharing.plan(study, share)

    def start(run: StudyRun) -> None:
        extra = sharing.runtime_keys(study, study_dir, run.id, branches)
        cfg = with_runtime(run.cfg, store.run_dir(study_dir, run.id, run.cfg), nthreads, extra)
        proc = ctx.Process(target=child_main, name=f"mimscale-study-{run.id}",
                           args=(str(study_dir), run.id, cfg, run.evals, run_fn, nthreads, os.getpid()))
        _start_ignoring_sigint(proc)
        active[run.id] = (proc, run, time.time())
        attempted.add(run.id)
        tracker.started(run, store.run_dir(study_dir, run.id, run.cfg))

    def reap(run_id: str) -> None:
        proc, run, t0 = active.pop(run_id)
        proc.join()
        code, secs = proc.exitcode, time.time() - t0
        name = store.run_dir(study_dir, run_id, run.cfg).name
        if code == EXIT_CLAIMED:  # another process claimed it first: it is theirs now
            attempted.discard(run_id)
            tracker.requeued(run)
        elif code == EXIT_DONE:
            report.done.append(run_id)
            tracker.finished(run_id, ok=True)
            eta = tracker.eta_s() if tracker.running or tracker.pending else None
            log(f"[{finished_count()}/{total}] done    {name} ({secs:.0f}s)"
                + (f"; study ETA {clock(eta)}" if eta is not None else ""))
        elif sig.count or code in (EXIT_INTERRUPTED, -signal.SIGINT, -signal.SIGTERM):
            report.interrupted.append(run_id)
            tracker.requeued(run)
            _drop_dead_claim(study_dir, run_id, proc.pid)
        else:
            if code != EXIT_FAILED:  # killed (OOM killer, segfault) before it could record anything
                why = f"worker process died with {_exit_text(code)}"
                store.record_failure(study_dir, run_id, why, why + "\n" + _tail(study_dir, run_id), run.cfg)
                _drop_dead_claim(study_dir, run_id, proc.pid)
            report.failed.append(run_id)
            tracker.finished(run_id, ok=False)
            err = store.run_dir(study_dir, run_id, run.cfg).error
            log(f"[{finished_count()}/{total}] FAILED  {name}: "
                f"{store.failure_line(study_dir, run_id)} (see {err})")

    with _Signals(lambda: [p for p, _, _ in active.values()]) as sig:
        while True:
            if not sig.count:
                for run in order:
                    if len(active) >= workers:
                        break
                    if run.id in active or run.id in attempted or run.id in report.skipped:
                        continue
                    state = store.run_state(study_dir, run.id, run.evals)
                    if state == RunState.DONE:
                        tracker.settled_elsewhere(run.id)  # another runner on this directory finished it
                        continue
                    if state in store.RUNNABLE and sharing.waiting_for(study_dir, run.id, branches):
                        continue  # its trunk is still on its way to the branch point
                    if state in store.RUNNABLE and (retry_failed or state != RunState.FAILED):
                        name = store.run_dir(study_dir, run.id, run.cfg).name
                        log(f"start   {name}{store.resume_note(study_dir, run.id, run.evals, state)}")
                        start(run)
            if not active:
                if sig.count:
                    break
                elsewhere = [r.id for r in order if r.id not in attempted and r.id not in report.skipped
                             and store.run_state(study_dir, r.id, r.evals) == RunState.RUNNING]
                if not (elsewhere and wait_for_others):
                    for r in order:
                        why = sharing.waiting_for(study_dir, r.id, branches)
                        if why and r.id not in report.skipped:
                            log(f"not run {store.run_dir(study_dir, r.id, r.cfg).name}: it {why}, which did not "
                                f"finish; rerun to retry")
                    break
                for r in order:  # the view follows what the other process finishes meanwhile
                    if r.id in tracker.pending and store.run_state(study_dir, r.id, r.evals) == RunState.DONE:
                        tracker.settled_elsewhere(r.id)
                if view is not None:
                    view.tick()
                time.sleep(poll_s)  # runs claimed by another process: wait, and take over if it dies
                continue
            ready = wait([p.sentinel for p, _, _ in active.values()], timeout=poll_s)
            for run_id in [rid for rid, (p, _, _) in active.items() if p.sentinel in ready]:
                reap(run_id)
            if view is not None:
                view.tick()
        report.stopped = sig.count > 0
    return report


def _start_ignoring_sigint(proc) -> None:
    """Start a worker with SIGINT ignored (an ignored signal stays ignored across exec; the worker's own handler
    replaces it once it runs, ``worker.child_main``). While a worker imports, it is still in the terminal's
    process group: without this a Ctrl-C there is a KeyboardInterrupt traceback from inside its imports."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are the caller's
        proc.start()
        return
    try:
        proc.start()
    finally:
        signal.signal(signal.SIGINT, previous)


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _tail(study_dir: Path, run_id: str, lines: int = 30) -> str:
    try:
        text = store.run_dir(study_dir, run_id).worker_log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _drop_dead_claim(study_dir: Path, run_id: str, pid: int | None) -> None:
    """A worker killed by a signal cannot release its claim; the parent knows it is dead, so removes it."""
    path = store.lock_path(study_dir, run_id)
    info = store.read_lock(path)
    if info is not None and info.get("pid") == pid and not store.lock_is_live(path, info):
        path.unlink(missing_ok=True)
