"""The checks that stop a training run gone wrong, in one object with one state and one message format:
too many consecutive non-finite steps, a diverging training loss, exploding weights."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from mimscale.engine.step import StepResult
from mimscale.errors import TrainingError

# Smoothing of the training loss for the divergence check: a ~10-step average reacts within a few steps of a
# blow-up, while batch-to-batch noise (+-20% on the CPU presets) stays far below a 4x rise.
LOSS_EMA_BETA = 0.9
# A healthy run's parameter norm moved by 1.04-1.29x over the demo's runs (2,000 iterations, weight decay
# 0.05); 100x is far outside anything that still trains.
WEIGHT_BLOWUP = 100.0


@torch.no_grad()
def weight_norm(model: nn.Module) -> float:
    """The L2 norm of all parameters together (compared with the initial one)."""
    return float(torch.sqrt(sum(p.detach().float().square().sum() for p in model.parameters())))


class Guard:
    """Watches a run step by step. ``max_nonfinite`` consecutive non-finite steps stop it (fp16 gradients that
    overflow the loss scale are the scaler's normal back-off, not counted, until the scale falls below 1);
    ``divergence_factor`` > 0 stops it when the smoothed loss rises above that multiple of its minimum;
    ``check_weights`` (before a checkpoint) stops it when the weights' norm exceeds ``WEIGHT_BLOWUP`` x the
    initial one. ``hint`` says what to change. Only ``initial_weight_norm`` travels in a checkpoint (the
    other state restarts with the process: a checkpoint is only written after a finite step)."""

    def __init__(self, hint: str, max_nonfinite: int, divergence_factor: float = 0.0):
        self.hint, self.max_nonfinite, self.divergence_factor = hint, max_nonfinite, divergence_factor
        self.consecutive_bad = 0
        self.loss_ema = math.nan
        self.min_loss_ema, self.min_loss_ema_step = math.inf, 0
        self.initial_weight_norm = 0.0  # of the freshly initialised model (0: unknown, a checkpoint of mimscale 0.1)

    def state_dict(self) -> dict:
        return {"initial_weight_norm": self.initial_weight_norm}

    def load_state_dict(self, state: dict) -> None:
        self.initial_weight_norm = state.get("initial_weight_norm") or 0.0

    @property
    def clean(self) -> bool:
        """The last step was finite: the state may be checkpointed."""
        return self.consecutive_bad == 0

    def fail(self, step: int, what: str, kept: str) -> None:
        raise TrainingError(f"{what} at step {step}; {self.hint} ({kept})")

    def after_step(self, step: int, result: StepResult, scaler: torch.amp.GradScaler | None = None) -> None:
        """Account for optimizer step ``step`` (1-based: after that many updates)."""
        if not result.finite:
            overflow = result.loss_finite and scaler is not None and scaler.get_scale() >= 1.0
            self.consecutive_bad += 0 if overflow else 1
            if self.consecutive_bad >= self.max_nonfinite:
                self.fail(step, f"{self.consecutive_bad} consecutive non-finite losses", "the last good checkpoint is kept")
            return
        self.consecutive_bad = 0
        loss = result.loss
        self.loss_ema = loss if math.isnan(self.loss_ema) else LOSS_EMA_BETA * self.loss_ema + (1 - LOSS_EMA_BETA) * loss
        if self.loss_ema < self.min_loss_ema:
            self.min_loss_ema, self.min_loss_ema_step = self.loss_ema, step
        if self.divergence_factor > 0 and self.loss_ema > self.divergence_factor * self.min_loss_ema:
            self.fail(step, f"the training loss diverged (smoothed {self.loss_ema:.4g} is more than "
                            f"{self.divergence_factor:g}x its minimum {self.min_loss_ema:.4g} at step "
                            f"{self.min_loss_ema_step})", "no checkpoint was written after it diverged")

    def start_weights(self, model: nn.Module) -> None:
        """The initial weight norm, unless a checkpoint restored it."""
        self.initial_weight_norm = self.initial_weight_norm or weight_norm(model)

    def check_weights(self, step: int, model: nn.Module) -> None:
        norm = weight_norm(model)  # the same on every rank (DDP keeps them in sync), so all raise together
        if norm > WEIGHT_BLOWUP * self.initial_weight_norm:
            self.fail(step, f"the weights exploded (norm {norm:.3g} vs {self.initial_weight_norm:.3g} at "
                            f"initialisation)", "this state is not checkpointed")
