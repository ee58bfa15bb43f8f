"""Layer-wise learning-rate decay for fine-tuning (docs/METHOD.md, Fine-tuning and other evaluations).

Every backbone says which "layer" a parameter belongs to (``encoder.layer_id(name)``: 0 for the
embedding, one id per block, ``num_layers - 1`` for the final norm); a parameter's LR is the base LR
times ``decay ** (num_layers - 1 - id)``. Anything outside the encoder (the classifier head, a
segmentation decoder) is new and gets the full LR, id ``num_layers - 1``. Evaluation never branches on
architecture: the ids come from the backbone.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from mimscale.engine.params import adamw, param_groups
from mimscale.engine.schedule import scaled_lr


def layer_scale(layer_id: int, num_layers: int, decay: float) -> float:
    return decay ** (num_layers - 1 - layer_id)


def param_layer_ids(model: nn.Module, encoder_prefix: str = "encoder.") -> dict[str, int]:
    """Layer id of every trainable parameter of ``model`` (a wrapper holding ``model.encoder``)."""
    encoder = model.encoder
    top = encoder.num_layers - 1
    ids = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # Strip the wrapper prefix so the backbone sees its own names; new modules get the top id.
        ids[name] = encoder.layer_id(name[len(encoder_prefix):]) if name.startswith(encoder_prefix) else top
    return ids


def param_groups_layer_decay(model: nn.Module, weight_decay: float, layer_decay: float,
                             no_weight_decay: set[str] | None = None) -> list[dict]:
    """Optimizer groups keyed by (layer id, decayed or not), each with an ``lr_scale`` and its ``names``.

    ``model`` wraps a backbone as ``model.encoder``; ``no_weight_decay`` holds full parameter names
    (``encoder.`` prefix included) exempt beyond the backbone's own and the engine's 1-D/bias rule.
    ``LRSchedule.apply`` sets ``group["lr"] = lr * group["lr_scale"]``.
    """
    exempt = set(no_weight_decay or ()) | {f"encoder.{n}" for n in model.encoder.no_weight_decay()}
    num_layers = model.encoder.num_layers
    return param_groups(model, weight_decay, exempt, layer_of=param_layer_ids(model).__getitem__,
                        layer_scale=lambda lid: layer_scale(lid, num_layers, layer_decay), names=True)


def layer_decay_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """AdamW over the layer-decay groups of a model wrapping ``model.encoder`` (fine-tuning, segmentation); the
    schedule's LR per 512 images is scaled to the global batch here, each group's ``lr_scale`` when applied."""
    groups = param_groups_layer_decay(model, cfg.weight_decay, cfg.layer_decay)
    for g in groups:
        g.pop("names")  # optimizer state stays small; the names are for inspection and tests
    return adamw(groups, scaled_lr(cfg.base_lr, cfg.batch_size))
