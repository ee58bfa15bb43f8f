"""SwinV2 backbone: numerics against transformers' Swinv2, presets, layer ids, masking, window rules."""

from __future__ import annotations

import math

import pytest
import torch
import transformers

from mimscale.engine.params import no_decay_names
from mimscale.models.hf import swinv2_from_transformers
from mimscale.models.swinv2 import MODEL_CLASS, PRESETS, SwinV2

# img 32, patch 2, window 4: stage resolutions 16 (shifted), 8 (shifted), 4 (== window: clamped, no shift)
SMALL = dict(img_size=32, patch_size=2, embed_dim=16, depths=(2, 2, 2), num_heads=(1, 2, 4), window_size=4,
             drop_path_rate=0.0)

# The study's backbone sizes in millions (docs/METHOD.md, Swin V2), mask token included, decoder excluded.
PAPER_PARAMS_M = {"swinv2-s": 49.0, "swinv2-b": 86.9, "swinv2-l": 195.2, "swinv2-h": 655.2, "swinv2-g": 1061.0}
CPU_PRESETS = [name for name in PRESETS if name not in PAPER_PARAMS_M]


def _hf_model(window: int, pretrained: list[int], masked_image_modeling: bool):
    torch.manual_seed(0)
    cfg = transformers.Swinv2Config(image_size=64, patch_size=4, embed_dim=32, depths=[2, 2, 2],
                                    num_heads=[2, 4, 8], window_size=window, pretrained_window_sizes=pretrained,
                                    encoder_stride=16, drop_path_rate=0.0)
    if masked_image_modeling:
        model = transformers.Swinv2ForMaskedImageModeling(cfg)
    else:
        model = transformers.Swinv2Model(cfg, add_pooling_layer=False, use_mask_token=True)
    # HF initialises norms to 1/0, biases and the mask token to 0: perturb them all, so that a swapped,
    # dropped or mis-ordered parameter changes the output (our res-post-norms would otherwise be 1/0 too).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "logit_scale" in name:
                p.add_(0.3 * torch.randn_like(p))
            elif "norm" in name or name.endswith("bias") or "mask_token" in name:
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.5 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize(
    "window, pretrained, mim",
    [
        (4, [0, 0, 0], True),  # shifted stages 0-1, stage 2 resolution == window (clamped)
        (6, [8, 6, 2], False),  # padding to the window, stage 2 window clamped to 4 < 6, fine-tune CPB scale
    ],
)
def test_matches_transformers(window, pretrained, mim):
    hf = _hf_model(window, pretrained, mim)
    ours = swinv2_from_transformers(hf).eval()
    hf_backbone = getattr(hf, "swinv2", hf)
    g = torch.Generator().manual_seed(1)
    for size in (64, 80):  # 80: a resolution the model was not built for (on-the-fly masks, odd merge)
        x = torch.randn(2, 3, size, size, generator=g)
        mask = torch.rand(2, size // 4, size // 4, generator=g) > 0.5
        with torch.no_grad():
            ref = hf_backbone(x, bool_masked_pos=mask.flatten(1)).last_hidden_state
            out = ours.forward_features(x, mask)
        side = math.ceil(size / 16)
        assert out.shape == (2, 128, side, side)
        ref = ref.transpose(1, 2).reshape(out.shape)
        assert ref.abs().max() > 1.0  # the comparison is not between two near-zero tensors
        assert (out - ref).abs().max() < 1e-4


def test_pretrained_window_changes_coords():
    a = SwinV2(**SMALL, pretrained_window_sizes=(0, 0, 0))
    b = SwinV2(**SMALL, pretrained_window_sizes=(8, 8, 8))
    ta = a.layers[0].blocks[0].attn.relative_coords_table
    tb = b.layers[0].blocks[0].attn.relative_coords_table
    assert ta.shape == tb.shape == (49, 2)
    # window 4: offsets +-3 / (4-1) * 8 = +-8 -> log2(9)/log2(8); with pretrained 8: +-3/7*8.
    assert ta.max().item() == pytest.approx(math.log2(9) / 3)
    assert tb.max().item() == pytest.approx(math.log2(3 / 7 * 8 + 1) / 3)


def test_checkpoint_loads_across_window_sizes():
    src = SwinV2(**SMALL)
    dst = SwinV2(**{**SMALL, "window_size": 2})
    state = src.state_dict()
    assert not any("relative_" in k or "attn_mask" in k for k in state)  # rebuilt, never stored
    dst.load_state_dict(state, strict=True)
    assert dst.layers[0].blocks[0].attn.relative_position_index.shape == (4, 4)
    assert dst.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 64, 4, 4)


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS_M))
def test_paper_preset_param_counts(name):
    with torch.device("meta"):
        model = MODEL_CLASS(**PRESETS[name])
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(n - PAPER_PARAMS_M[name]) / PAPER_PARAMS_M[name] < 0.002, n
    assert model.stride == 32 and model.num_features == PRESETS[name]["embed_dim"] * 8
    assert model.num_layers == 26  # 24 blocks + embedding + final norm


@pytest.mark.parametrize("name", CPU_PRESETS)
def test_cpu_preset_forward_backward(name):
    torch.manual_seed(0)
    model = MODEL_CLASS(**PRESETS[name]).train()
    size = model.img_size
    assert size % model.stride == 0
    x = torch.randn(2, 3, size, size)
    mask = torch.randint(0, 2, (2, size // model.patch_size, size // model.patch_size))
    out = model.forward_features(x, mask)
    assert out.shape == (2, model.num_features, size // model.stride, size // model.stride)
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert model.mask_token.grad.abs().sum() > 0


def test_layer_id_matches_spec():
    model = SwinV2(**SMALL)
    assert model.num_layers == 8
    expected = {
        "mask_token": 0,
        "patch_embed.proj.weight": 0,
        "patch_embed.norm.bias": 0,
        "layers.0.blocks.0.attn.qkv.weight": 1,
        "layers.0.blocks.1.mlp.fc1.weight": 2,
        "layers.0.downsample.reduction.weight": 2,
        "layers.1.blocks.0.attn.cpb_mlp.0.weight": 3,
        "layers.1.blocks.1.norm2.weight": 4,
        "layers.1.downsample.norm.weight": 4,
        "layers.2.blocks.0.attn.logit_scale": 5,
        "layers.2.blocks.1.attn.q_bias": 6,
        "norm.weight": 7,
        "head.weight": 7,
    }
    names = dict(model.named_parameters())
    for name, lid in expected.items():
        assert name in names or name == "head.weight", name
        assert model.layer_id(name) == lid, name
        assert model.layer_id("encoder." + name) == lid, name  # as seen through the SimMIM wrapper
    assert {model.layer_id(n) for n in names} == set(range(model.num_layers))


def test_no_weight_decay_names():
    model = SwinV2(**SMALL)
    skip = no_decay_names(model, model.no_weight_decay())  # the model's own names and the engine's 1-D rule
    params = dict(model.named_parameters())
    assert all(p.ndim > 1 for n, p in params.items() if n in model.no_weight_decay() and "mask_token" not in n
               and "logit_scale" not in n and "cpb_mlp" not in n)  # the model names only its special ones
    assert skip <= set(params)
    for name in ["mask_token", "layers.0.blocks.0.attn.cpb_mlp.0.weight", "layers.0.blocks.0.attn.cpb_mlp.0.bias",
                 "layers.0.blocks.0.attn.cpb_mlp.2.weight", "layers.0.blocks.1.attn.logit_scale",
                 "layers.0.blocks.0.attn.q_bias", "layers.0.blocks.0.attn.v_bias",
                 "layers.0.blocks.0.attn.proj.bias", "layers.0.blocks.0.norm1.weight",
                 "layers.0.downsample.norm.weight", "patch_embed.proj.bias", "norm.weight"]:
        assert name in skip, name
    for name in ["layers.0.blocks.0.attn.qkv.weight", "layers.0.blocks.0.mlp.fc1.weight",
                 "layers.0.blocks.0.attn.proj.weight", "layers.0.downsample.reduction.weight",
                 "patch_embed.proj.weight"]:
        assert name in params and name not in skip, name


def test_mask_token_replaces_masked_tokens():
    torch.manual_seed(0)
    model = SwinV2(**SMALL).eval()
    x1, x2 = torch.randn(2, 1, 3, 32, 32)
    mask = torch.zeros(1, 16, 16)
    mask[:, 4:10, 2:12] = 1
    with torch.no_grad():
        e1, e2 = model.embed(x1, mask), model.embed(x2, mask)
        plain = model.embed(x1)
    m = mask.bool()
    # Masked positions are the mask token, whatever the pixels; visible ones are the plain embedding.
    assert torch.equal(e1[m], e2[m])
    assert torch.allclose(e1[m], model.mask_token.view(1, -1).expand(int(m.sum()), -1))
    assert torch.equal(e1[~m], plain[~m])
    assert not torch.allclose(e1[~m], e2[~m])
    # A flattened (B, L) mask is the same mask.
    assert torch.equal(model.embed(x1, mask.flatten(1)), e1)

    # Fully masked: nothing of the image reaches the output; fully visible differs from it.
    with torch.no_grad():
        ones = torch.ones(1, 16, 16)
        full1, full2 = model.forward_features(x1, ones), model.forward_features(x2, ones)
        none1 = model.forward_features(x1, torch.zeros(1, 16, 16))
    assert torch.allclose(full1, full2, atol=1e-6)
    assert (full1 - none1).abs().max() > 1e-2


def test_window_clamp_and_shift_pattern():
    model = SwinV2(**SMALL)
    got = [[(b.window, b.shift) for b in stage.blocks] for stage in model.layers]
    assert got == [[(4, 0), (4, 2)], [(4, 0), (4, 2)], [(4, 0), (4, 0)]]
    # Resolution below the window: the window shrinks to the resolution, nothing shifts.
    model = SwinV2(**{**SMALL, "window_size": 6})
    got = [[(b.window, b.shift) for b in stage.blocks] for stage in model.layers]
    assert got == [[(6, 0), (6, 3)], [(6, 0), (6, 3)], [(4, 0), (4, 0)]]
    assert model.layers[2].blocks[1].attn.relative_position_index.shape == (16, 16)
    assert model.layers[2].blocks[1].attn_mask is None


def test_zero_init_blocks_are_identity_and_intermediates():
    torch.manual_seed(0)
    model = SwinV2(**SMALL).eval()
    for m in model.modules():
        if hasattr(m, "norm1"):
            assert not m.norm1.weight.any() and not m.norm2.bias.any()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = model.forward_intermediates(x)
        emb = model.embed(x).permute(0, 3, 1, 2)
        feats = model.forward_features(x)
    assert [tuple(m.shape) for m in maps] == [(2, 16, 16, 16)] * 2 + [(2, 32, 8, 8)] * 2 + [(2, 64, 4, 4)] * 2
    assert torch.equal(maps[0], emb) and torch.equal(maps[1], emb)  # zero-init res-post-norm: identity
    assert torch.allclose(model.norm(maps[-1].permute(0, 2, 3, 1)).permute(0, 3, 1, 2), feats)
    assert feats.shape == (2, model.num_features, 32 // model.stride, 32 // model.stride)


def test_drop_path_schedule_and_interface_attributes():
    model = SwinV2(**{**SMALL, "drop_path_rate": 0.5})
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for s in model.layers for b in s.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert (model.stride, model.patch_size, model.num_features, model.depths) == (8, 2, 64, (2, 2, 2))


def test_bf16_autocast_runs():
    torch.manual_seed(0)
    model = SwinV2(**SMALL).train()
    x = torch.randn(2, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_features(x, torch.randint(0, 2, (2, 16, 16)))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    out.float().mean().backward()
    assert torch.isfinite(model.layers[0].blocks[1].attn.cpb_mlp[0].weight.grad).all()


def test_fused_attention_branch_matches_cpu_branch(monkeypatch):
    """The accelerator branch (SDPA with the position bias and the shifted-window mask as one additive mask,
    windows folded into heads) computes what the CPU branch does: outputs and every gradient, the position
    bias MLP's included. Run on CPU by routing _attention to SDPA, so the GPU path's layout is tested here."""
    import torch.nn.functional as F

    from mimscale.models import swinv2

    torch.manual_seed(0)
    model = SwinV2(img_size=64, patch_size=4, embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=4,
                   drop_path_rate=0.0)
    for m in model.modules():  # leave the zero-initialised identity blocks: every block must matter
        if isinstance(m, torch.nn.LayerNorm):
            torch.nn.init.normal_(m.weight)
            torch.nn.init.normal_(m.bias, std=0.1)
    x = torch.randn(2, 3, 64, 64)
    mask = (torch.rand(2, 16, 16) < 0.6).float()

    def run():
        model.zero_grad()
        out = model(x, mask)
        out.square().mean().backward()
        return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    out_cpu, grads_cpu = run()
    monkeypatch.setattr(swinv2, "_attention",
                        lambda q, k, v, bias: F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0))
    out_sdpa, grads_sdpa = run()
    assert any(b.shift for stage in model.layers for b in stage.blocks)  # the shifted-window mask is exercised
    torch.testing.assert_close(out_sdpa, out_cpu, rtol=1e-5, atol=1e-5)
    for name, g in grads_cpu.items():
        torch.testing.assert_close(grads_sdpa[name], g, rtol=1e-4, atol=1e-6, msg=name)
    assert grads_cpu["layers.0.blocks.1.attn.cpb_mlp.0.weight"].abs().sum() > 0
