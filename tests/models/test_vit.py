"""ViT backbone: numerics against transformers' ViT, every preset, layer decay ids, position embeddings."""

from __future__ import annotations

import pytest
import torch
import transformers

from mimscale.engine.params import no_decay_names
from mimscale.models import build_model
from mimscale.models.hf import vit_from_transformers
from mimscale.models.vit import PRESETS, VisionTransformer, sincos_2d
from mimscale.objectives.simmim import SimMIM

CPU_PRESETS = [n for n in PRESETS if n.startswith("vit-cpu")]
BIG_PRESETS = [n for n in PRESETS if not n.startswith("vit-cpu")]


@pytest.fixture(scope="module")
def hf_mim():
    """A small ViTForMaskedImageModeling with every weight perturbed, so no term is trivially zero/one."""
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64, encoder_stride=8)
    model = transformers.ViTForMaskedImageModeling(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model


def _hf_map(hidden: torch.Tensor, grid: int) -> torch.Tensor:
    tokens = hidden[:, 1:]  # drop cls
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, grid, grid)


def _random_mask(batch: int, grid: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, grid, grid, generator=g) < 0.5


def test_matches_transformers_vit_with_mask(hf_mim):
    ours = vit_from_transformers(hf_mim).eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    mask = _random_mask(3, 4)
    with torch.no_grad():
        ref = _hf_map(hf_mim.vit(x, bool_masked_pos=mask.flatten(1)).last_hidden_state, 4)
        out = ours.forward_features(x, mask)
        unmasked = ours.forward_features(x)
    assert out.shape == (3, 32, 4, 4)
    assert (out - ref).abs().max().item() < 1e-4
    assert (unmasked - out).abs().max().item() > 1e-2  # the mask token really was applied
    assert ours.layer_id("norm.weight") == ours.num_layers - 1 == 3


def test_matches_transformers_vit_at_other_resolution(hf_mim):
    # Abs position embedding interpolated bicubically exactly as HF's interpolate_pos_encoding.
    ours = vit_from_transformers(hf_mim).eval()
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = _hf_map(hf_mim.vit(x, interpolate_pos_encoding=True).last_hidden_state, 6)
        out = ours.forward_features(x)
    assert out.shape == (2, 32, 6, 6)
    assert (out - ref).abs().max().item() < 1e-4


def test_simmim_loss_matches_transformers(hf_mim):
    encoder = vit_from_transformers(hf_mim)
    model = SimMIM(encoder, in_chans=3, norm_target=False).eval()
    model.decoder.load_state_dict(hf_mim.decoder.state_dict())
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    mask = _random_mask(4, 4, seed=5)
    with torch.no_grad():
        ref = hf_mim(x, bool_masked_pos=mask.flatten(1))
        out = model(x, mask.float())
    assert ref.loss.item() > 0.1
    assert abs(out.loss.item() - ref.loss.item()) <= 1e-5 * ref.loss.item()
    assert (out.pred - ref.reconstruction).abs().max().item() < 1e-4


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_forward_backward(name):
    kwargs = dict(PRESETS[name])
    if name in BIG_PRESETS:  # the real block design at a size that runs in a test: 2 blocks, 4x4 tokens
        kwargs.update(img_size=64, depth=2)
    torch.manual_seed(0)
    model = VisionTransformer(**kwargs)
    size = model.img_size[0]
    x = torch.randn(2, 3, size, size)
    mask = torch.zeros(2, *model.grid)
    mask[:, ::2] = 1
    feats = model.forward_features(x, mask)
    assert feats.shape == (2, model.num_features, size // model.stride, size // model.stride)
    assert model.stride == model.patch_size == kwargs["patch_size"]
    feats.square().mean().backward()
    for n, p in model.named_parameters():  # every parameter, zero-initialised relative tables included
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n


@pytest.mark.parametrize("name,expected", [
    ("vit-tiny", 5_493_588), ("vit-small", 21_604_008), ("vit-base", 85_675_344),
    ("vit-large", 303_161_792), ("vit-cpu-s", 31_680), ("vit-cpu-m", 212_480), ("vit-cpu-l", 1_214_720),
])
def test_preset_param_counts(name, expected):
    with torch.device("meta"):
        model = VisionTransformer(**PRESETS[name])
    assert sum(p.numel() for p in model.parameters()) == expected


def test_param_count_matches_timm_vit_base():
    # timm's vit_base_patch16_224 without head has 85,798,656 params: abs pos + cls + qkv bias.
    with torch.device("meta"):
        model = VisionTransformer(embed_dim=768, depth=12, num_heads=12, pos_embed="abs",
                                  use_cls_token=True, use_mask_token=False)
    assert sum(p.numel() for p in model.parameters()) == 85_798_656


def test_cpu_presets_match_demo_notes():
    # Demo sizes (encoder + SimMIM decoder Conv2d(C, 8*8*3, 1)): 38k, 225k, 1.24M; 16 tokens.
    for name, approx in zip(CPU_PRESETS, (38_000, 225_000, 1_240_000)):
        model = VisionTransformer(**PRESETS[name])
        total = sum(p.numel() for p in model.parameters()) + model.num_features * 192 + 192
        assert abs(total - approx) / approx < 0.01, name
        assert model.grid == (4, 4) and model.stride == 8 and model.pos_embed_type == "sincos"


def test_registry_builds_vit_presets():
    model = build_model("vit-cpu-s", depth=1)
    assert isinstance(model, VisionTransformer) and model.depth == 1 and model.num_layers == 3


def test_layer_id():
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2,
                              pos_embed="abs", use_cls_token=True)
    assert model.num_layers == 5
    expected = {"cls_token": 0, "mask_token": 0, "pos_embed": 0, "patch_embed.weight": 0, "patch_embed.bias": 0,
                "blocks.0.norm1.weight": 1, "blocks.0.attn.qkv.weight": 1, "blocks.2.mlp.fc2.bias": 3,
                "norm.weight": 4, "norm.bias": 4, "head.weight": 4}
    assert {n: model.layer_id(n) for n in expected} == expected
    for n, _ in model.named_parameters():
        assert 0 <= model.layer_id(n) < model.num_layers


def test_no_weight_decay():
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, pos_embed="rel",
                              use_cls_token=True, init_values=0.1)
    nwd = no_decay_names(model, model.no_weight_decay())  # the model's own names and the engine's 1-D rule
    names = dict(model.named_parameters())
    assert model.no_weight_decay() == {"cls_token", "mask_token", "blocks.0.attn.rel_pos_bias.relative_position_bias_table",
                                       "blocks.1.attn.rel_pos_bias.relative_position_bias_table"}
    assert {"cls_token", "mask_token", "blocks.0.attn.rel_pos_bias.relative_position_bias_table",
            "blocks.1.gamma_1", "blocks.0.norm1.weight", "blocks.0.attn.qkv.bias", "norm.bias",
            "patch_embed.bias"} <= nwd
    assert nwd <= set(names)
    decayed = set(names) - nwd
    assert decayed == {n for n, p in names.items() if p.ndim >= 2 and "bias_table" not in n
                       and n not in ("cls_token", "mask_token")}
    assert "blocks.0.attn.qkv.weight" in decayed and "patch_embed.weight" in decayed
    abs_model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    assert "pos_embed" in abs_model.no_weight_decay()


def test_sincos_is_fixed_and_distinct():
    model = VisionTransformer(**PRESETS["vit-cpu-s"])
    assert "pos_embed" not in dict(model.named_parameters())
    assert "pos_embed" not in model.state_dict()  # recomputed, never loaded from a checkpoint
    pe = model.pos_embed[0]
    assert pe.shape == (16, 32) and not pe.requires_grad
    assert torch.cdist(pe, pe).add(torch.eye(16) * 1e3).min() > 0.5  # every position is distinct
    assert torch.allclose(pe, sincos_2d(32, (4, 4)))
    # Row 0 and column 0 use sin(0)=0 / cos(0)=1 in their halves.
    assert torch.allclose(pe[0], torch.tensor([0.0] * 8 + [1.0] * 8 + [0.0] * 8 + [1.0] * 8))
    # Other resolutions recompute the grid: 48 px -> 6x6 tokens, with the 4x4 corner unchanged.
    big = sincos_2d(32, (6, 6)).reshape(6, 6, 32)[:4, :4].reshape(16, 32)
    assert torch.allclose(big, pe)
    assert model.forward_features(torch.randn(1, 3, 48, 48)).shape == (1, 32, 6, 6)


def test_fully_masked_output_ignores_pixels():
    model = VisionTransformer(**PRESETS["vit-cpu-m"]).eval()
    mask = torch.ones(2, 4, 4)
    with torch.no_grad():
        a = model.forward_features(torch.randn(2, 3, 32, 32), mask)
        b = model.forward_features(torch.randn(2, 3, 32, 32), mask)
    assert torch.allclose(a, b, atol=1e-6)


def test_intermediates_end_in_features():
    model = VisionTransformer(**PRESETS["vit-cpu-m"]).eval()
    x, mask = torch.randn(2, 3, 32, 32), _random_mask(2, 4)
    with torch.no_grad():
        inter = model.forward_intermediates(x, mask)
        feats = model.forward_features(x, mask)
    assert len(inter) == model.depth and all(t.shape == (2, 64, 4, 4) for t in inter)
    last = model.norm(inter[-1].flatten(2).transpose(1, 2)).transpose(1, 2).reshape(2, 64, 4, 4)
    assert torch.allclose(last, feats, atol=1e-5)


@pytest.mark.parametrize("shared", [False, True])
def test_relative_bias_changes_output_and_other_resolution(shared):
    torch.manual_seed(0)
    kw = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, pos_embed="rel",
              use_cls_token=True, rel_pos_shared=shared)
    model = VisionTransformer(**kw).eval()
    tables = [p for n, p in model.named_parameters() if n.endswith("relative_position_bias_table")]
    assert len(tables) == (1 if shared else 2) and tables[0].shape == (7 * 7 + 3, 2)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = model.forward_features(x)
        for t in tables:
            t.normal_()
        after = model.forward_features(x)
        wide = model.forward_features(torch.randn(1, 3, 48, 64))  # table resized, index rebuilt
    assert (before - after).abs().max() > 1e-2
    assert wide.shape == (1, 32, 6, 8) and torch.isfinite(wide).all()


def test_load_checkpoint_at_other_resolution():
    torch.manual_seed(0)
    kw = dict(patch_size=8, embed_dim=32, depth=2, num_heads=2, use_cls_token=True)
    for pos in ("abs", "rel", "sincos"):
        src = VisionTransformer(img_size=32, pos_embed=pos, **kw)
        dst = VisionTransformer(img_size=48, pos_embed=pos, **kw)
        dst.load_state_dict(src.state_dict())  # strict
        x = torch.randn(1, 3, 48, 48)
        with torch.no_grad():  # loading resized == running the source at 48 px (same interpolation)
            assert torch.allclose(dst.forward_features(x), src.forward_features(x), atol=1e-5), pos


def test_shared_table_expands_to_per_block():
    # SimMIM ViT: pre-train with one shared table, fine-tune with one table per block copied from it.
    torch.manual_seed(0)
    kw = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, pos_embed="rel", use_cls_token=True)
    pre = VisionTransformer(rel_pos_shared=True, **kw).eval()
    with torch.no_grad():
        pre.rel_pos_bias.relative_position_bias_table.normal_()
    fine = VisionTransformer(rel_pos_shared=False, **kw).eval()
    fine.load_state_dict(pre.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fine.forward_features(x), pre.forward_features(x), atol=1e-5)


def test_layer_scale_and_bad_inputs():
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, init_values=0.1)
    assert torch.allclose(model.blocks[0].gamma_1, torch.full((32,), 0.1))
    with pytest.raises(ValueError, match="pos_embed"):
        VisionTransformer(pos_embed="learned")
    with pytest.raises(ValueError, match="mask"):
        model.forward_features(torch.randn(1, 3, 32, 32), torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match="use_mask_token"):
        VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2,
                          use_mask_token=False).forward_features(torch.randn(1, 3, 32, 32), torch.ones(1, 4, 4))
