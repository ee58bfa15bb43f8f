"""The study runner's progress, as a person follows it: runs done / total, each running run's step and ETA,
and the study's ETA with the evaluations in it.

The ETA is steady because it is built from totals, not from the last interval: seconds per step are
measured per model over every step this runner has watched (a model's runs share one rate), and the time a
run spends outside its training steps (start-up, evaluations) is measured on the runs that finished. The
study's ETA is the work left (each unfinished run's remaining steps at its model's rate, plus that overhead)
spread over the workers, and never less than the longest single run left. The shown end time is then
smoothed (an exponential average of the predicted end, so a new measurement moves it gradually).

Torch-free: it reads ``metrics.jsonl`` tails through ``study/status.py``.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field

from mimscale.rundir import RunDir
from mimscale.study.cost import clock
from mimscale.study.spec import StudyRun, total_steps_of
from mimscale.study.status import progress as read_progress

SMOOTHING = 0.3  # weight of a new prediction of the study's end time in the shown one
PROGRESS_EVERY_S = 60.0  # not on a terminal: a progress line this often, or when a run passes a tenth
REDRAW_S = 1.0  # on a terminal: the view is redrawn this often


def model_key(run: StudyRun) -> str:
    """Runs whose steps cost the same: model, image size and global batch."""
    c = run.cfg
    return f"{c.model.name}|{c.data.img_size}|{c.train.batch_size}"


@dataclass
class _Watch:
    """What the tracker knows of one run of this call."""

    run: StudyRun
    run_dir: RunDir
    total: int | None
    start_step: int  # where this attempt began (a resumed run does not count its old steps)
    start_time: float
    step: int
    seen_step: int | None = None  # the step and record time of the previous look: the rate's samples
    seen_time: float | None = None


@dataclass
class StudyProgress:
    """Follows a study's runs while a runner runs them; ``lines()`` is the view, ``eta_s()`` the study ETA."""

    total_runs: int
    workers: int = 1
    done: int = 0
    failed: int = 0
    pending: dict[str, tuple[StudyRun, int]] = field(default_factory=dict)  # run id -> (run, steps done)
    running: dict[str, _Watch] = field(default_factory=dict)
    rates: dict[str, list[float]] = field(default_factory=dict)  # model key -> [seconds, steps] watched
    overheads: list[float] = field(default_factory=list)  # seconds outside training steps, per finished run
    shown_end: float | None = None

    def add_pending(self, run: StudyRun, steps_done: int = 0) -> None:
        self.pending[run.id] = (run, steps_done)

    def started(self, run: StudyRun, run_dir: RunDir, now: float | None = None) -> None:
        _, steps_done = self.pending.pop(run.id, (run, 0))
        self.running[run.id] = _Watch(run, RunDir(run_dir), total_steps_of(run.cfg), steps_done,
                                      time.time() if now is None else now, steps_done)

    def finished(self, run_id: str, ok: bool, now: float | None = None) -> None:
        w = self.running.pop(run_id, None)
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if w is None or not ok:
            return
        trained = (w.total or w.step) - w.start_step
        wall = (time.time() if now is None else now) - w.start_time
        acc = self.rates.get(model_key(w.run))
        if not acc or acc[1] <= 0:  # a run too short to be watched: its whole wall time is its model's rate
            if trained > 0:
                self.rates[model_key(w.run)] = [wall, float(trained)]
            return
        # The rest of its wall time went to start-up and evaluations: every unfinished run will spend it too.
        self.overheads.append(max(0.0, wall - trained * acc[0] / acc[1]))

    def settled_elsewhere(self, run_id: str) -> None:
        """A waiting run that another process finished: done, and no longer in the ETA."""
        if self.pending.pop(run_id, None) is not None:
            self.done += 1

    def requeued(self, run: StudyRun) -> None:
        """A run that went back to waiting (claimed elsewhere, interrupted)."""
        w = self.running.pop(run.id, None)
        self.pending[run.id] = (run, w.step if w else 0)

    # ------------------------------------------------------------------------------------ measuring

    def observe(self, run_id: str, step: int | None, record_time: float | None) -> None:
        """A look at a running run: its newest step and that record's time feed its model's rate."""
        w = self.running.get(run_id)
        if w is None or step is None:
            return
        if record_time is not None and record_time < w.start_time:
            return  # a record of an earlier attempt: the time between attempts is no step's cost
        if record_time is not None and w.seen_step is not None and w.seen_time is not None \
                and step > w.seen_step and record_time > w.seen_time:
            acc = self.rates.setdefault(model_key(w.run), [0.0, 0.0])
            acc[0] += record_time - w.seen_time
            acc[1] += step - w.seen_step
        if record_time is not None:
            w.seen_step, w.seen_time = step, record_time
        w.step = max(w.step, step)

    def poll(self) -> None:
        """Read each running run's newest metric record (the tail of its metrics.jsonl)."""
        for run_id, w in list(self.running.items()):
            if w.run_dir.metrics.is_file():
                p = read_progress(w.run_dir, want_val=False)  # the newest step only: a small read
                self.observe(run_id, p["step"], p["time"])

    def rate(self, run: StudyRun) -> float | None:
        """Seconds per step of ``run``'s model; unmeasured: the mean of the measured models' rates."""
        acc = self.rates.get(model_key(run))
        if acc and acc[1] > 0:
            return acc[0] / acc[1]
        known = [s / n for s, n in self.rates.values() if n > 0]
        return sum(known) / len(known) if known else None

    def overhead(self) -> float:
        return sum(self.overheads) / len(self.overheads) if self.overheads else 0.0

    # ------------------------------------------------------------------------------------ estimating

    def run_eta_s(self, w: _Watch, now: float | None = None) -> float | None:
        """Seconds until a running run is done: what its whole attempt is expected to take (its steps at its
        model's rate plus the measured overhead) minus the time it has run, so the estimate also counts down
        while it starts or evaluates; never less than its remaining steps at that rate."""
        rate = self.rate(w.run)
        if rate is None or w.total is None:
            return None
        steps_left = max(0, w.total - w.step) * rate
        if now is None:
            return steps_left + self.overhead()
        expected = max(0, w.total - w.start_step) * rate + self.overhead()
        return max(steps_left, expected - (now - w.start_time))

    def predicted_s(self, now: float | None = None) -> float | None:
        """Seconds until every unfinished run is done, evaluations included; None before any rate is known."""
        left = [self.run_eta_s(w, now) for w in self.running.values()]
        for run, steps_done in self.pending.values():
            rate, total = self.rate(run), total_steps_of(run.cfg)
            left.append(None if rate is None or total is None else max(0, total - steps_done) * rate + self.overhead())
        if not left:
            return 0.0
        if any(v is None for v in left):
            return None
        return max(sum(left) / max(1, self.workers), max(left))

    def eta_s(self, now: float | None = None) -> float | None:
        """The study's ETA as shown: the predicted end time, smoothed."""
        now = time.time() if now is None else now
        predicted = self.predicted_s(now)
        if predicted is None:
            return None
        end = now + predicted
        self.shown_end = end if self.shown_end is None else SMOOTHING * end + (1 - SMOOTHING) * self.shown_end
        return max(0.0, self.shown_end - now)

    # ------------------------------------------------------------------------------------ the view

    def headline(self, now: float | None = None) -> str:
        eta = self.eta_s(now)
        evals = "" if self.overheads or eta is None else " (evaluations not measured yet)"
        return (f"[study] {self.done}/{self.total_runs} done, {len(self.running)} running"
                + (f", {self.failed} failed" if self.failed else "")
                + f", {len(self.pending)} waiting; study ETA {clock(eta) if eta is not None else 'measuring'}{evals}")

    def run_lines(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        out = []
        width = max((len(w.run_dir.name) for w in self.running.values()), default=0)  # columns line up
        for w in self.running.values():
            total = "?" if w.total is None else str(w.total)
            pct = f" {100 * w.step / w.total:3.0f}%" if w.total else ""
            doing = "  evaluating" if w.total and w.step >= w.total else ""  # trained; its evaluations run
            out.append(f"  {w.run_dir.name:<{width}}  step {w.step}/{total}{pct}{doing}  ETA {clock(self.run_eta_s(w, now))}")
        return out

    def lines(self, now: float | None = None) -> list[str]:
        return [self.headline(now), *self.run_lines(now)]

    def tenths(self) -> dict[str, int]:
        """Each running run's progress in tenths: a non-TTY log writes a line when one of them moves on."""
        return {rid: (10 * w.step // w.total if w.total else 0) for rid, w in self.running.items()}


class ConsoleView:
    """The study's progress on stderr: on a terminal, a block of lines (headline, one line per running run)
    redrawn in place under the runner's messages; otherwise (a log file, CI) the same lines every
    ``every_s`` seconds or when a running run passes a tenth of its steps."""

    def __init__(self, tracker: StudyProgress, stream=None, every_s: float = PROGRESS_EVERY_S,
                 tty: bool | None = None):
        self.tracker, self.stream = tracker, stream if stream is not None else sys.stderr
        self.tty = bool(self.stream.isatty()) if tty is None else tty
        self.every_s = float(every_s)
        self.drawn = 0  # lines of the block now on the terminal
        self.last_draw = self.last_line = 0.0
        self.last_tenths: dict[str, int] = {}

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _clear(self) -> None:
        if self.drawn:  # to the start of the block's first line, then erase to the end of the screen
            self._write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0

    def _draw(self, now: float) -> None:
        width = max(20, shutil.get_terminal_size((160, 40)).columns - 1)  # no wrap: the line count stays right
        lines = [ln[:width] for ln in self.tracker.lines(now)]
        self._clear()
        self._write("".join(ln + "\n" for ln in lines))
        self.drawn, self.last_draw = len(lines), now

    def log(self, message: str) -> None:
        """A runner message (start, done, failed): above the block on a terminal."""
        if self.tty:
            self._clear()
            self._write(message + "\n")
            self._draw(time.time())
        else:
            self._write(message + "\n")

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if self.tty:
            if now - self.last_draw >= REDRAW_S:
                self.tracker.poll()
                self._draw(now)
            return
        self.tracker.poll()
        tenths = self.tracker.tenths()
        moved = any(t > self.last_tenths.get(rid, 0) for rid, t in tenths.items())
        if self.tracker.running and (moved or now - self.last_line >= self.every_s):
            self._write("".join(ln + "\n" for ln in self.tracker.lines(now)))
            self.last_line, self.last_tenths = now, tenths

    def close(self) -> None:
        if self.tty:
            self._clear()
