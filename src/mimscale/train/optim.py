"""AdamW with the SPEC's no-weight-decay groups (1-D params, biases, mask token, CPB MLP, logit scale)."""

from __future__ import annotations

import torch
import torch.nn as nn


def param_groups(model: nn.Module, weight_decay: float, skip: set[str] | None = None) -> list[dict]:
    """Two groups: decayed and not. ``skip`` names parameters exempt beyond the 1-D rule."""
    skip = skip or set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(".bias") or name in skip:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas, eps: float) -> torch.optim.AdamW:
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    # foreach=True batches the per-parameter updates: a measurable win for the many small tensors of Swin.
    return torch.optim.AdamW(param_groups(model, weight_decay, skip), lr=lr, betas=tuple(betas), eps=eps,
                             foreach=True)
