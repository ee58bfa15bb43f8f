"""One optimizer step (with accumulation, autocast, clipping and the non-finite guard) and the
deterministic reconstruction-loss evaluation used for the held-out and training-probe losses."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn as nn

from mimscale.train.distributed import all_reduce_mean, all_reduce_sum


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class StepResult:
    loss: float  # mean over the micro-batches, averaged over ranks
    grad_norm: float  # before clipping; nan when the step was skipped
    finite: bool  # loss and gradients: the update was applied
    loss_finite: bool  # False: the loss itself; True with finite False: only the gradients (fp16 overflow)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, micro_batches: list, lr: float,
               clip_grad: float, device: torch.device, precision: str,
               scaler: torch.amp.GradScaler | None = None, poison: bool = False) -> StepResult:
    """Accumulate gradients over ``micro_batches`` [(img, mask), ...], then one AdamW update.

    A non-finite loss or gradient skips the update (every rank agrees, the decision is all-reduced) and
    leaves parameters and optimizer state untouched. ``poison`` injects a NaN (fault-injection tests).
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=device)
    n = len(micro_batches)
    for i, (img, mask) in enumerate(micro_batches):
        img = img.to(device, non_blocking=True)
        mask = mask.to(device, non_blocking=True)
        # DDP: synchronise gradients only on the last micro-batch.
        sync = contextlib.nullcontext() if i == n - 1 or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast(device, precision):
                loss = model(img, mask).loss / n
            if poison:
                loss = loss * float("nan")
            (scaler.scale(loss) if scaler is not None else loss).backward()
        total += loss.detach()
    total = all_reduce_mean(total)
    if scaler is not None:
        scaler.unscale_(optimizer)
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    max_norm = clip_grad if clip_grad > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
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


@torch.no_grad()
def weight_norm(model: nn.Module) -> float:
    """The L2 norm of all parameters together (the divergence guard compares it with the initial one)."""
    return float(torch.sqrt(sum(p.detach().float().square().sum() for p in model.parameters())))


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
