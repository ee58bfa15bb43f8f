"""Metrics to ``metrics.jsonl`` (one JSON object per event), and to the experiment trackers ``track`` names
(``train/tracking.py``: TensorBoard by default, W&B, MLflow)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mimscale.rundir import RunDir, atomic_write_text
from mimscale.train.tracking import TensorBoardSink, each_sink, open_sinks, summary_metrics


class MetricsWriter:
    """Appends ``{"step", "split", "name", "value", "time"}`` lines; flushes each so a kill loses nothing.

    On resume, lines for steps after the checkpoint are dropped first: the resumed run writes them again,
    and a curve must not contain two values for one step. Every value also goes to the trackers of ``sinks``
    (``track``) on ``run_dir``, as the scalar ``split/name``; ``hparams`` starts the tracked run with them.
    """

    def __init__(self, path: Path, resume_step: int | None = None, enabled: bool = True, sinks=(),
                 run_dir: RunDir | None = None, hparams: dict | None = None):
        self.path = Path(path)
        self.enabled = enabled
        self.sinks: list = []
        self.finished = False  # finish() ran: the trackers close the run as done, not as stopped early
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            kept = [ln for ln in self.path.read_text().splitlines() if _step_of(ln) <= resume_step]
            atomic_write_text(self.path, "".join(ln + "\n" for ln in kept))
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        if sinks and run_dir is not None:
            replay = resume_step is not None and _forked_at(run_dir) == resume_step
            # A replay logs the curve from step 0 again: TensorBoard drops every earlier event (purge from step
            # 0), so a first process killed before the branch's own first checkpoint leaves no second copy.
            self.sinks = open_sinks(sinks, run_dir, -1 if replay else resume_step)
            for sink in self.sinks:
                if sink.where:  # where to look, once per process (a study's in each run's worker.log)
                    print(f"[track] {sink.where}", file=sys.stderr, flush=True)
            if hparams:
                self._each(lambda sink: sink.start(hparams))
            if replay:
                self._replay(resume_step)
        self.file = open(self.path, "a")

    def _each(self, call) -> None:
        """``call`` on every tracker; one that fails is dropped with a warning, and the run goes on."""
        self.sinks = each_sink(self.sinks, call, str(self.path))

    @property
    def tb(self):
        """The TensorBoard SummaryWriter when TensorBoard is a sink (for pictures), else None."""
        return next((s.writer for s in self.sinks if isinstance(s, TensorBoardSink)), None)

    def _replay(self, upto: int) -> None:
        """A branch's first process: its curve up to the fork was written by ``train/branch.py`` from the trunk's
        metrics.jsonl; the trackers get it too, so the branch's tracked curve starts at step 0."""
        groups: dict[tuple[int, str], dict[str, float]] = {}
        for line in self.path.read_text().splitlines():
            rec = json.loads(line)
            if rec["step"] <= upto:
                groups.setdefault((rec["step"], rec["split"]), {})[rec["name"]] = float(rec["value"])
        for (step, split), values in groups.items():
            scalars = {f"{split}/{name}": value for name, value in values.items()}
            self._each(lambda sink, step=step, scalars=scalars: sink.log(step, scalars))

    def log(self, step: int, split: str, name: str, value: float) -> None:
        self.log_many(step, split, {name: value})

    def log_many(self, step: int, split: str, values: dict) -> None:
        if not self.enabled:
            return
        now = time.time()
        for name, value in values.items():
            rec = {"step": int(step), "split": split, "name": name, "value": float(value), "time": now}
            self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        if self.sinks:  # one call per step: W&B makes one history row of it
            scalars = {f"{split}/{name}": float(value) for name, value in values.items()}
            self._each(lambda sink: sink.log(int(step), scalars))

    def finish(self, summary: dict) -> None:
        """The run is done: its final numbers (``summary.json``) as ``summary/<key>`` scalars at its last step,
        and the tracked run marked finished (TensorBoard's HParams session ends)."""
        if not self.enabled:
            return
        final = summary_metrics(summary)

        def end(sink) -> None:
            sink.log(int(summary.get("iters") or 0), final)
            sink.end()

        self._each(end)
        self.finished = True

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self._each(lambda sink: sink.close(self.finished))


def _forked_at(run_dir: RunDir) -> int | None:
    """The trunk step a branch was forked at (branch.json), None for a run trained from step 0."""
    try:
        return int(json.loads(run_dir.branch.read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # an unreadable (half-written) line is dropped
