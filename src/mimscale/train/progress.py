"""Progress display: a tqdm bar on a terminal, plain log lines (about every 10%) otherwise."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    def __init__(self, total: int, start: int = 0, enabled: bool = True, desc: str = "pretrain"):
        self.total, self.enabled, self.desc = total, enabled, desc
        self.tty = enabled and sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True) if self.tty else None
        self.start = self.last_step = start
        self.t0 = time.time()
        self.next_line = start + max(1, total // 10)

    def update(self, step: int, loss: float, images_per_s: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step - self.last_step)
            self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{images_per_s:.0f}", refresh=False)
        elif step >= self.next_line or step == self.total:
            rate = (step - self.start) / max(time.time() - self.t0, 1e-9)  # steps/s since this process began
            eta = (self.total - step) / rate if rate > 0 else float("nan")
            print(f"[{self.desc}] step {step}/{self.total} loss {loss:.4f} {images_per_s:.0f} img/s "
                  f"eta {eta:.0f}s", file=sys.stderr, flush=True)
            self.next_line = step + max(1, self.total // 10)
        self.last_step = step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
