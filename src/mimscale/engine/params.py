"""Optimizer parameter groups and AdamW, for pre-training and fine-tuning alike.

The no-weight-decay rule is written here once: 1-D parameters (norms, biases, scales) and any ``.bias`` are
never decayed; beyond that a model names its own special exemptions (``no_weight_decay()``: a mask token,
position tables, Swin V2's position-bias MLP). Layer decay (fine-tuning) splits the groups by layer, each with
an ``lr_scale`` that ``LRSchedule.apply`` multiplies in.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn


def decayed(name: str, p: torch.Tensor, exempt: set[str] | frozenset[str] = frozenset()) -> bool:
    """Whether weight decay applies to parameter ``name``: not to 1-D parameters, biases, or ``exempt`` names."""
    return not (p.ndim <= 1 or name.endswith(".bias") or name in exempt)


def no_decay_names(model: nn.Module, exempt: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """Every parameter of ``model`` that weight decay skips (the rule above plus ``exempt``)."""
    return {n for n, p in model.named_parameters() if not decayed(n, p, exempt)}


def param_groups(model: nn.Module, weight_decay: float, exempt: set[str] | frozenset[str] = frozenset(),
                 layer_of: Callable[[str], int] | None = None, layer_scale: Callable[[int], float] | None = None,
                 names: bool = False) -> list[dict]:
    """The optimizer groups of ``model``'s trainable parameters.

    Without ``layer_of``: two groups, decayed then not (the layout every pre-training optimizer state has).
    With it: one group per (layer id, decayed or not), in that order, each with its ``layer_id`` and
    ``lr_scale = layer_scale(layer id)`` (the layout of every fine-tuning optimizer state). ``names``: each
    group also lists its parameters' names (for inspection and tests; keep them out of an optimizer).
    """
    groups: dict[tuple[int, bool], dict] = {}
    if layer_of is None:  # both groups, even empty: a saved optimizer state has both
        groups = {(0, False): {"params": [], "weight_decay": weight_decay},
                  (0, True): {"params": [], "weight_decay": 0.0}}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = not decayed(name, p, exempt)
        lid = 0 if layer_of is None else layer_of(name)
        if (lid, skip) not in groups:
            groups[(lid, skip)] = {"params": [], "layer_id": lid, "weight_decay": 0.0 if skip else weight_decay,
                                   "lr_scale": layer_scale(lid) if layer_scale is not None else 1.0}
        groups[(lid, skip)]["params"].append(p)
        if names:
            groups[(lid, skip)].setdefault("names", []).append(name)
    # Fine-tuning's groups were saved exempt-first within each layer; pre-training's decayed-first.
    order = sorted(groups, key=lambda k: (k[0], not k[1] if layer_of is not None else k[1]))
    return [groups[k] for k in order]


def adamw(groups: list[dict], lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one pass per tensor) where PyTorch has it for the parameters' device, else
    foreach. On CPU fused measured 3-6x faster than foreach: vit-cpu-l 0.9 vs 5.5 ms, the C=96 Swin V2
    11 vs 38-55 ms an update (~4% of a training step)."""
    fused = all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps,
                             **({"fused": True} if fused else {"foreach": True}))
