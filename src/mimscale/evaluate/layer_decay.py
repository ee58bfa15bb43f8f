"""Layer-wise learning-rate decay for fine-tuning (docs/METHOD.md, Fine-tuning and other evaluations).

Every backbone says which "layer" a parameter belongs to (``encoder.layer_id(name)``: 0 for the
embedding, one id per block, ``num_layers - 1`` for the final norm); a parameter's LR is the base LR
times ``decay ** (num_layers - 1 - id)``. Anything outside the encoder (the classifier head, a
segmentation decoder) is new and gets the full LR, id ``num_layers - 1``. Evaluation never branches on
architecture: the ids come from the backbone.
"""

from __future__ import annotations

import torch.nn as nn


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
    """Optimizer groups keyed by (layer id, decayed or not), each with an ``lr_scale``.

    ``model`` wraps a backbone as ``model.encoder``; ``no_weight_decay`` holds full parameter names
    (``encoder.`` prefix included) exempt beyond the rule the pre-training engine uses (1-D params and
    biases are never decayed). The training loop sets ``group["lr"] = lr * group["lr_scale"]``.
    """
    skip = set(no_weight_decay or ())
    skip |= {f"encoder.{n}" for n in model.encoder.no_weight_decay()}
    num_layers = model.encoder.num_layers
    groups: dict[tuple[int, bool], dict] = {}
    params = dict(model.named_parameters())
    for name, lid in param_layer_ids(model).items():
        p = params[name]
        decayed = not (p.ndim <= 1 or name.endswith(".bias") or name in skip)
        key = (lid, decayed)
        if key not in groups:
            groups[key] = {"params": [], "names": [], "layer_id": lid,
                           "weight_decay": weight_decay if decayed else 0.0,
                           "lr_scale": layer_scale(lid, num_layers, layer_decay)}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return [groups[k] for k in sorted(groups)]
