"""The learning-rate schedule, a pure function of the step (docs/METHOD.md, Pre-training recipe and Fine-tuning),
shared by pre-training and fine-tuning. Torch-free: the study planner reads it.

All quantities are in optimizer steps; the LR values passed in are already scaled to the global batch.

Parameter groups with an ``lr_scale`` (fine-tuning's layer decay) follow one of two rules (``floor_rule``):
- ``absolute``, the official one: timm's schedulers (microsoft/Swin-Transformer ``lr_scheduler.py``, timm 0.4.12
  ``scheduler/cosine_lr.py``) take each group's initial LR, ``base_lr x lr_scale`` (``optimizer.py``,
  ``get_finetune_param_groups``), as that group's peak, and the same absolute ``warmup_lr`` and ``min_lr`` for
  every group: the group's LR is the schedule with ``peak x lr_scale``;
- ``scaled``: the whole schedule times ``lr_scale``, warmup start and floor included (pre-training, whose groups
  all have scale 1, where both rules agree; fine-tuning before schema 7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mimscale.config import warmup_steps

FLOOR_RULES = ("absolute", "scaled")


def scaled_lr(per_512: float, global_batch: int) -> float:
    """Linear scaling rule: LRs in the recipe are per 512 images (accumulation included)."""
    return per_512 * global_batch / 512


def decay_start(total: int, kind: str, step_at: float, decay_fraction: float) -> int:
    """The first step whose LR depends on the run's length: the step decay's, or a WSD cool-down's start."""
    if kind == "step":
        return int(step_at * total)
    if kind == "wsd":
        return total - round(decay_fraction * total)
    raise ValueError(f"a {kind} schedule depends on the length from the end of warmup")


def lr_at(step: int, total: int, peak: float, warmup_steps: int, warmup_lr: float, min_lr: float,
          kind: str = "cosine", step_at: float = 0.875, step_gamma: float = 0.1, decay_fraction: float = 0.2,
          decay_shape: str = "linear") -> float:
    """LR used for optimizer step ``step`` (0-based) of ``total``.

    Warmup is linear from ``warmup_lr`` at step 0 to ``peak`` at step ``warmup_steps``; then one of
    - ``cosine``: a cosine from ``peak`` to ``min_lr`` at step ``total``;
    - ``step``: ``peak`` multiplied by ``step_gamma`` from ``step_at * total`` on (the official SimMIM Swin V2
      recipe);
    - ``wsd`` (warmup-stable-decay, Hagele et al. 2024): ``peak`` until the last ``decay_fraction`` of the run,
      then down to ``min_lr`` at ``total``, ``decay_shape`` linear or cosine.
    Step and WSD schedules do not depend on the length before their decay starts: runs of several lengths
    share that prefix exactly (``train/prefix.py``).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return warmup_lr + (peak - warmup_lr) * step / warmup_steps
    if kind == "step":
        return peak * (step_gamma if step >= int(step_at * total) else 1.0)
    if kind == "wsd":
        start = decay_start(total, kind, step_at, decay_fraction)
        if step < start:
            return peak
        frac = min(1.0, (step - start) / max(1, total - start))
        shape = frac if decay_shape == "linear" else 0.5 * (1.0 - math.cos(math.pi * frac))
        return peak + (min_lr - peak) * shape
    span = max(1, total - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class LRSchedule:
    """A run's LR schedule, fixed at set-up: ``schedule(step)`` is the LR of optimizer step ``step``."""

    total: int
    peak: float
    warmup_steps: int
    warmup_lr: float
    min_lr: float
    kind: str = "cosine"
    step_at: float = 0.875
    step_gamma: float = 0.1
    decay_fraction: float = 0.2
    decay_shape: str = "linear"
    floor_rule: str = "scaled"  # how a group's lr_scale applies: "absolute" | "scaled" (module docstring)

    def __post_init__(self):
        if self.floor_rule not in FLOOR_RULES:
            raise ValueError(f"floor_rule must be one of {', '.join(FLOOR_RULES)}, got {self.floor_rule!r}")

    @classmethod
    def from_config(cls, t, total: int) -> LRSchedule:
        """From a ``train`` config section: LRs per 512 images scaled to the global batch; warmup in
        steps or a fraction of the run (``config.warmup_steps``)."""
        warmup = warmup_steps(t, total)
        return cls(total, scaled_lr(t.base_lr, t.batch_size), warmup, scaled_lr(t.warmup_lr, t.batch_size),
                   scaled_lr(t.min_lr, t.batch_size), t.schedule, t.step_at, t.step_gamma, t.decay_fraction,
                   t.decay_shape)

    @classmethod
    def in_epochs(cls, cfg, steps_per_epoch: int, floor_rule: str = "scaled") -> LRSchedule:
        """Fine-tuning's warmup + cosine, from an evaluation config whose lengths are in epochs."""
        total = max(1, cfg.epochs * steps_per_epoch)
        return cls(total, scaled_lr(cfg.base_lr, cfg.batch_size), min(total, round(cfg.warmup_epochs * steps_per_epoch)),
                   scaled_lr(cfg.warmup_lr, cfg.batch_size), scaled_lr(cfg.min_lr, cfg.batch_size),
                   floor_rule=floor_rule)

    def __call__(self, step: int) -> float:
        return lr_at(step, self.total, self.peak, self.warmup_steps, self.warmup_lr, self.min_lr, self.kind,
                     self.step_at, self.step_gamma, self.decay_fraction, self.decay_shape)

    def group_lr(self, step: int, lr_scale: float) -> float:
        """The LR of a parameter group with ``lr_scale`` at optimizer step ``step``, by ``floor_rule``."""
        if self.floor_rule == "scaled" or lr_scale == 1.0:
            return self(step) * lr_scale
        return lr_at(step, self.total, self.peak * lr_scale, self.warmup_steps, self.warmup_lr, self.min_lr,
                     self.kind, self.step_at, self.step_gamma, self.decay_fraction, self.decay_shape)

    def apply(self, optimizer, step: int) -> float:
        """Set every group's LR for optimizer step ``step`` from its ``lr_scale`` (layer decay; 1 where a group has
        none) by ``floor_rule``. Returns the schedule's LR (a group of scale 1 has it under either rule)."""
        for group in optimizer.param_groups:
            group["lr"] = self.group_lr(step, group.get("lr_scale", 1.0))
        return self(step)


def set_lr(optimizer, lr: float) -> None:
    """Every group's LR: ``lr`` times the group's ``lr_scale`` (layer decay; 1 where a group has none)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
