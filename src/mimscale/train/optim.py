"""AdamW with the no-weight-decay groups of docs/METHOD.md, Swin V2 (1-D params, biases, mask token, CPB MLP, logit scale)."""

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


def adamw(groups: list[dict], lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one pass per tensor) where PyTorch has it for the parameters' device, else
    foreach. On CPU fused measured 3-6x faster than foreach: vit-cpu-l 0.9 vs 5.5 ms, the C=96 Swin V2
    11 vs 38-55 ms an update (~4% of a training step)."""
    fused = all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps,
                             **({"fused": True} if fused else {"foreach": True}))


# Named exemptions the official SimMIM pre-training does not apply (train.decay_position_bias=true).
POSITION_BIAS_NAMES = ("cpb_mlp", "logit_scale")


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas, eps: float,
                    decay_position_bias: bool = False) -> torch.optim.AdamW:
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    if decay_position_bias:  # 1-D parameters and biases stay exempt (param_groups' own rule), as officially
        skip = {n for n in skip if not any(k in n for k in POSITION_BIAS_NAMES)}
    return adamw(param_groups(model, weight_decay, skip), lr, betas, eps)
