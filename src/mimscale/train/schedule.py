"""A pre-training run's length in steps and its evaluation points (docs/METHOD.md, Pre-training recipe); the
LR schedule itself is the engine's (``mimscale.engine.schedule``). Torch-free: the study planner reads it.
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


def eval_steps(total: int, every: int, points: int) -> set[int]:
    """Steps (1-based, after that many updates) at which to evaluate; always includes the last."""
    if every > 0:
        steps = set(range(every, total + 1, every))
    else:
        steps = {max(1, round(total * k / points)) for k in range(1, points + 1)}
    return steps | {total}


# Time of one evaluation image (a forward pass) relative to one training image (forward, backward, update).
# By FLOPs 1/3; measured 0.31-0.38 on the CPU presets (benchmarks/eval_cost.py: the backward is a little
# under 2x the forward), so 0.4 keeps the budget on the safe side.
EVAL_IMAGE_COST = 0.4


def budgeted_eval_points(points: int, steps: int, batch_size: int, eval_images: int, budget: float) -> int:
    """The number of evenly spaced evaluations (the final one included, the step-0 one counted on top) whose
    total cost stays within ``budget`` x the run's training compute, at most ``points`` and at least 1.

    Counted in images, not measured seconds, so the schedule is the same on every machine.
    """
    if budget <= 0 or eval_images <= 0:
        return points
    affordable = int(budget * steps * batch_size / (EVAL_IMAGE_COST * eval_images)) - 1  # minus step 0
    return max(1, min(points, affordable))


def every(step: int, n: int) -> bool:
    return n > 0 and step % n == 0
