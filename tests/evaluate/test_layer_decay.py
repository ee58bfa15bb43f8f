"""Layer-wise LR decay: ids and LR scales of named parameters follow docs/METHOD.md, Fine-tuning and other evaluations."""

import pytest
import torch.nn as nn

from mimscale.evaluate.finetune import Classifier
from mimscale.evaluate.layer_decay import param_groups_layer_decay
from mimscale.models import build_model

DECAY = 0.75


def _table(model: nn.Module) -> dict[str, tuple[int, float, float]]:
    """name -> (layer id, lr scale, weight decay) from the optimizer groups."""
    out = {}
    for g in param_groups_layer_decay(model, weight_decay=0.05, layer_decay=DECAY):
        for name in g["names"]:
            assert name not in out, f"{name} in two groups"
            out[name] = (g["layer_id"], g["lr_scale"], g["weight_decay"])
    return out


def test_swinv2_layer_ids_match_spec():
    # The study's depths (2, 2, 18, 2) at a tiny width: num_layers = 24 + 2 = 26.
    enc = build_model("swinv2", img_size=32, patch_size=2, embed_dim=8, depths=(2, 2, 18, 2), num_heads=(1, 1, 1, 1),
                      window_size=2, drop_path_rate=0.0)
    model = Classifier(enc, num_classes=5)
    table = _table(model)
    assert len(table) == sum(1 for p in model.parameters() if p.requires_grad)
    expected = {
        "encoder.mask_token": 0,
        "encoder.patch_embed.proj.weight": 0,
        "encoder.patch_embed.norm.bias": 0,
        "encoder.layers.0.blocks.0.attn.qkv.weight": 1,  # sum(depths[:0]) + 0 + 1
        "encoder.layers.0.blocks.1.mlp.fc1.weight": 2,
        "encoder.layers.0.downsample.reduction.weight": 2,  # sum(depths[:1])
        "encoder.layers.1.blocks.0.attn.cpb_mlp.0.weight": 3,
        "encoder.layers.1.downsample.norm.weight": 4,  # sum(depths[:2])
        "encoder.layers.2.blocks.0.attn.logit_scale": 5,
        "encoder.layers.2.blocks.17.norm2.bias": 22,  # 2 + 2 + 17 + 1
        "encoder.layers.2.downsample.reduction.weight": 22,  # sum(depths[:3])
        "encoder.layers.3.blocks.1.attn.proj.weight": 24,
        "encoder.norm.weight": 25,  # num_layers - 1
        "head.weight": 25,
        "head.bias": 25,
    }
    for name, lid in expected.items():
        got_id, scale, _ = table[name]
        assert got_id == lid, name
        assert scale == pytest.approx(DECAY ** (26 - 1 - lid)), name
    # No weight decay on 1-D params, biases, the mask token, the CPB MLP and logit scales (docs/METHOD.md, Swin V2).
    assert table["encoder.layers.2.blocks.0.attn.qkv.weight"][2] == 0.05
    assert table["head.weight"][2] == 0.05
    for name in ("encoder.mask_token", "encoder.layers.1.blocks.0.attn.cpb_mlp.0.weight", "head.bias",
                 "encoder.layers.2.blocks.0.attn.logit_scale", "encoder.norm.weight"):
        assert table[name][2] == 0.0, name


def test_vit_layer_ids_match_spec_equivalent():
    # BEiT/SimMIM convention: embeddings 0, block i -> i + 1, final norm and head num_layers - 1 = depth + 1.
    enc = build_model("vit", img_size=32, patch_size=8, embed_dim=16, depth=12, num_heads=2, use_cls_token=True,
                      pos_embed="abs", drop_path_rate=0.0)
    model = Classifier(enc, num_classes=5)
    table = _table(model)
    expected = {"encoder.cls_token": 0, "encoder.pos_embed": 0, "encoder.mask_token": 0,
                "encoder.patch_embed.weight": 0, "encoder.blocks.0.attn.qkv.weight": 1,
                "encoder.blocks.5.mlp.fc2.bias": 6, "encoder.blocks.11.norm1.weight": 12,
                "encoder.norm.weight": 13, "head.weight": 13}
    for name, lid in expected.items():
        assert table[name][0] == lid, name
        assert table[name][1] == pytest.approx(DECAY ** (14 - 1 - lid)), name
    assert table["encoder.pos_embed"][2] == 0.0 and table["encoder.blocks.0.attn.qkv.weight"][2] == 0.05


def test_frozen_parameters_are_left_out():
    enc = build_model("vit-cpu-s")
    model = Classifier(enc, 3)
    enc.requires_grad_(False)
    names = [n for g in param_groups_layer_decay(model, 0.05, DECAY) for n in g["names"]]
    assert sorted(names) == ["head.bias", "head.weight"]
