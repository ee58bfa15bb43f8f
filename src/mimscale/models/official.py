"""The checkpoint format of the official SimMIM code (microsoft/Swin-Transformer ``main_simmim_pt.py``), in
which the authors released their pre-trained Swin V2 models.

A released file is a ``torch.save`` dict whose ``model`` entry is the state dict of the official ``SimMIM``
wrapper: ``encoder.*`` (``SwinTransformerV2ForSimMIM``: the backbone plus ``mask_token``) and ``decoder.0.*``
(the 1x1 convolution before the pixel shuffle); some files also carry ``optimizer``, ``lr_scheduler``,
``epoch``, ``config``. mimscale's Swin V2 uses the official parameter names, so the conversion only drops
what mimscale rebuilds from the geometry instead of loading it, the buffers ``relative_coords_table``,
``relative_position_index`` and ``attn_mask``, and renames ``rpe_mlp`` (the name of the continuous position
bias MLP in early checkpoints, which the official loader renames too) to ``cpb_mlp``.
"""

from __future__ import annotations

import re

# Buffers the official Swin V2 stores (persistent) and mimscale derives from the window geometry.
DERIVED_BUFFERS = re.compile(r"\.(relative_coords_table|relative_position_index|attn_mask)$")


def is_official_simmim(state: dict) -> bool:
    """A SimMIM state dict in the official naming: encoder weights and the 1x1-conv decoder."""
    return any(k.startswith("encoder.") for k in state) and "decoder.0.weight" in state


def from_official_simmim(state: dict) -> dict:
    """An official SimMIM ``model`` state dict -> the state dict of mimscale's ``SimMIM`` (load it strictly)."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")  # saved from a DDP wrapper
        if DERIVED_BUFFERS.search(key):
            continue
        out[key.replace(".rpe_mlp.", ".cpb_mlp.")] = value
    return out
