"""One optimizer step for every training loop: gradient accumulation (DDP synchronising on the last
micro-batch), the grad scaler, clipping, and the non-finite policy (a step whose loss or gradients are not
finite is skipped, the same on every rank; ``guard.Guard`` counts them and stops the run after too many)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from mimscale.engine.distributed import all_reduce_sum


@dataclass
class StepResult:
    loss: float  # the loss of the global batch (as the loop's micro-batch losses define it)
    grad_norm: float  # before clipping; nan when the step was skipped
    finite: bool  # loss and gradients: the update was applied
    loss_finite: bool  # False: the loss itself; True with finite False: only the gradients (fp16 overflow)


# One micro-batch: forward (under the loop's autocast) -> (the loss to back-propagate, its detached share of
# the reported loss, summed over micro-batches and ranks before ``divisor`` divides it).
MicroBatch = Callable[[], tuple[torch.Tensor, torch.Tensor]]


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, micro_batches: Sequence[MicroBatch],
                   total: torch.Tensor, divisor: float, clip_params: list[torch.Tensor], clip_grad: float,
                   scaler: torch.amp.GradScaler | None = None) -> StepResult:
    """Accumulate the gradients of ``micro_batches``, then one update of ``optimizer`` (its LRs already set).

    ``total`` is the zero the reported loss accumulates in (its dtype and device are the loop's); the gradient
    norm is that of ``clip_params`` (clipped to ``clip_grad``; 0: not clipped). A non-finite loss or gradient
    skips the update and leaves parameters and optimizer state untouched (the decision is all-reduced, so every
    rank agrees); fp16: the scaler backs off.
    """
    optimizer.zero_grad(set_to_none=True)
    n = len(micro_batches)
    for i, micro in enumerate(micro_batches):
        # DDP: synchronise gradients only on the last micro-batch.
        sync = contextlib.nullcontext() if i == n - 1 or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            loss, share = micro()
            (scaler.scale(loss) if scaler is not None else loss).backward()
        total += share
    total = all_reduce_sum(total) / divisor
    if scaler is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, as the official code does
    grad_norm = torch.nn.utils.clip_grad_norm_(clip_params, clip_grad if clip_grad > 0 else float("inf"))
    checks = torch.isfinite(all_reduce_sum(torch.stack([total, grad_norm.to(total)])))
    loss_finite, finite = bool(checks[0]), bool(checks.all())
    if finite:
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.update()  # lets the scaler back off on fp16 overflow
    return StepResult(loss=float(total), grad_norm=float(grad_norm) if finite else float("nan"), finite=finite,
                      loss_finite=loss_finite)
