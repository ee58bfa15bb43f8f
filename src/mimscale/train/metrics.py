"""Metrics to ``metrics.jsonl`` (one JSON object per event), with TensorBoard as an optional sink."""

from __future__ import annotations

import json
import time
from pathlib import Path

from mimscale.rundir import atomic_write_text


class MetricsWriter:
    """Appends ``{"step", "split", "name", "value", "time"}`` lines; flushes each so a kill loses nothing.

    On resume, lines for steps after the checkpoint are dropped first: the resumed run writes them again,
    and a curve must not contain two values for one step.
    """

    def __init__(self, path: Path, resume_step: int | None = None, tensorboard_dir: Path | None = None,
                 enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            kept = [ln for ln in self.path.read_text().splitlines() if _step_of(ln) <= resume_step]
            atomic_write_text(self.path, "".join(ln + "\n" for ln in kept))
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self.file = open(self.path, "a")
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                # purge_step: drop the events a killed process logged after the checkpoint we resume from.
                self.tb = SummaryWriter(str(tensorboard_dir),
                                        purge_step=None if resume_step is None else resume_step + 1)
            except ImportError:  # tensorboard is an optional extra
                self.tb = None

    def log(self, step: int, split: str, name: str, value: float) -> None:
        if not self.enabled:
            return
        rec = {"step": int(step), "split": split, "name": name, "value": float(value), "time": time.time()}
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        if self.tb is not None:
            self.tb.add_scalar(f"{split}/{name}", float(value), int(step))
            self.tb.flush()  # as metrics.jsonl: a kill loses no buffered event

    def log_many(self, step: int, split: str, values: dict) -> None:
        for name, value in values.items():
            self.log(step, split, name, value)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.tb is not None:
                self.tb.close()


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # an unreadable (half-written) line is dropped
