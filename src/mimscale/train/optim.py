"""The pre-training optimizer: AdamW over the engine's two groups (docs/METHOD.md, Swin V2: 1-D params,
biases, mask token, CPB MLP, logit scale are not decayed)."""

from __future__ import annotations

import torch
import torch.nn as nn

from mimscale.engine.params import adamw, param_groups

# Named exemptions the official SimMIM pre-training does not apply (train.decay_position_bias=true).
POSITION_BIAS_NAMES = ("cpb_mlp", "logit_scale")


def pretrain_optimizer(model: nn.Module, lr: float, weight_decay: float, betas, eps: float,
                    decay_position_bias: bool = False) -> torch.optim.AdamW:
    exempt = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    if decay_position_bias:  # 1-D parameters and biases stay exempt (the engine's own rule), as officially
        exempt = {n for n in exempt if not any(k in n for k in POSITION_BIAS_NAMES)}
    return adamw(param_groups(model, weight_decay, exempt), lr, betas, eps)
