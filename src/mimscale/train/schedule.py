"""Learning-rate schedules as pure functions of the step (SPEC section 4), and run length in steps.

All quantities are in optimizer steps; the LR values passed in are already scaled to the global batch.
"""

from __future__ import annotations

import math


def total_steps(iters: int, epochs: float, samples: int, global_batch: int, data_size: int) -> int:
    """The one place where a training length in any unit becomes optimizer steps."""
    if iters > 0:
        return int(iters)
    if samples > 0:
        return max(1, math.ceil(samples / global_batch))
    if epochs > 0:
        return max(1, math.ceil(epochs * data_size / global_batch))
    raise ValueError("no training length given")


def scaled_lr(per_512: float, global_batch: int) -> float:
    """Linear scaling rule: LRs in the recipe are per 512 images (accumulation included)."""
    return per_512 * global_batch / 512


def lr_at(step: int, total: int, peak: float, warmup_steps: int, warmup_lr: float, min_lr: float,
          kind: str = "cosine", step_at: float = 0.875, step_gamma: float = 0.1) -> float:
    """LR used for optimizer step ``step`` (0-based) of ``total``.

    Warmup is linear from ``warmup_lr`` at step 0 to ``peak`` at step ``warmup_steps``; then either a
    cosine from ``peak`` to ``min_lr`` at step ``total``, or ``peak`` multiplied by ``step_gamma`` from
    ``step_at * total`` on (the official SimMIM Swin V2 recipe).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return warmup_lr + (peak - warmup_lr) * step / warmup_steps
    if kind == "step":
        return peak * (step_gamma if step >= int(step_at * total) else 1.0)
    span = max(1, total - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def eval_steps(total: int, every: int, points: int) -> set[int]:
    """Steps (1-based, after that many updates) at which to evaluate; always includes the last."""
    if every > 0:
        steps = set(range(every, total + 1, every))
    else:
        steps = {max(1, round(total * k / points)) for k in range(1, points + 1)}
    return steps | {total}


def every(step: int, n: int) -> bool:
    return n > 0 and step % n == 0
