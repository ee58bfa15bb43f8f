"""SimMIM's optimizer step (the engine's step over reconstruction-loss micro-batches) and the deterministic
reconstruction-loss evaluation used for the held-out and training-probe losses."""

from __future__ import annotations

import torch
import torch.nn as nn

from mimscale.engine.distributed import all_reduce_sum, world_size
from mimscale.engine.runtime import autocast
from mimscale.engine.schedule import set_lr
from mimscale.engine.step import StepResult, optimizer_step

__all__ = ["StepResult", "autocast", "reconstruction_loss", "train_step"]


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, micro_batches: list, lr: float,
               clip_grad: float, device: torch.device, precision: str,
               scaler: torch.amp.GradScaler | None = None, poison: bool = False) -> StepResult:
    """Accumulate gradients over ``micro_batches`` [(img, mask), ...], then one AdamW update at ``lr``.

    The reported loss is the mean over micro-batches and ranks. A non-finite loss or gradient skips the update
    (the engine's policy). ``poison`` injects a NaN (fault-injection tests).
    """
    set_lr(optimizer, lr)
    n = len(micro_batches)

    def micro(img, mask):
        def forward():
            with autocast(device, precision):
                loss = model(img.to(device, non_blocking=True), mask.to(device, non_blocking=True)).loss / n
            if poison:
                loss = loss * float("nan")
            return loss, loss.detach()
        return forward

    params = [p for g in optimizer.param_groups for p in g["params"]]
    return optimizer_step(model, optimizer, [micro(img, mask) for img, mask in micro_batches],
                          torch.zeros((), device=device), world_size(), params, clip_grad, scaler)


@torch.no_grad()
def reconstruction_loss(model: nn.Module, batches, device: torch.device, precision: str) -> float:
    """SimMIM loss over a fixed set: total masked absolute error / total masked pixels / channels.

    Summed over every rank's share of the set before dividing, so the value does not depend on
    batch size or world size (only on float summation order).
    """
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    channels = 3
    for img, mask in batches:
        img, mask = img.to(device), mask.to(device)
        with autocast(device, precision):
            out = model(img, mask)
        sums[0] += out.error_sum.double().sum()
        sums[1] += out.mask_sum.double().sum()
        channels = out.pred.shape[1]
    sums = all_reduce_sum(sums)
    model.train(was_training)
    return float(sums[0] / sums[1].clamp(min=1) / channels)
