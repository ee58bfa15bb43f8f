"""Progress display: a tqdm bar on a terminal; otherwise (a worker's log, a batch job) plain lines every
``LINE_EVERY_S`` seconds or every tenth of the run, whichever comes first, so a log shows life within a
minute at any run length (a tenth of a paper-length run is 12,500 steps, hours apart)."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

LINE_EVERY_S = 60.0


class Progress:
    def __init__(self, total: int, start: int = 0, enabled: bool = True, desc: str = "pretrain",
                 every_s: float = LINE_EVERY_S):
        self.total, self.enabled, self.desc, self.every_s = total, enabled, desc, float(every_s)
        self.tty = enabled and sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True) if self.tty else None
        self.start = self.last_step = start
        self.t0 = self.last_time = time.time()
        self.next_line = start + max(1, total // 10)

    def update(self, step: int, loss: float, images_per_s: float) -> None:
        if not self.enabled:
            return
        now = time.time()
        if self.bar is not None:
            self.bar.update(step - self.last_step)
            self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{images_per_s:.0f}", refresh=False)
        elif step >= self.next_line or step == self.total or now - self.last_time >= self.every_s:
            rate = (step - self.start) / max(now - self.t0, 1e-9)  # steps/s since this process began
            eta = (self.total - step) / rate if rate > 0 else float("nan")
            print(f"[{self.desc}] step {step}/{self.total} loss {loss:.4f} {images_per_s:.0f} img/s "
                  f"eta {eta:.0f}s", file=sys.stderr, flush=True)
            if step >= self.next_line:
                self.next_line = step + max(1, self.total // 10)
            self.last_time = now
        self.last_step = step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
