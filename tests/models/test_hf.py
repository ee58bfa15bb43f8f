"""Weights in from transformers (object or local directory) and out to safetensors; SimMIM loss parity."""

import numpy as np
import pytest
import torch
import transformers

from mimscale.masking import MaskGenerator
from mimscale.models import build_model
from mimscale.models.hf import (
    copy_decoder_from_transformers,
    export_safetensors,
    from_transformers,
    load_safetensors,
)
from mimscale.objectives.simmim import SimMIM


def _swin_mim():
    torch.manual_seed(0)
    cfg = transformers.Swinv2Config(image_size=64, patch_size=4, embed_dim=32, depths=[2, 2, 2], num_heads=[2, 4, 8],
                                    window_size=4, encoder_stride=16, drop_path_rate=0.0)
    model = transformers.Swinv2ForMaskedImageModeling(cfg)
    with torch.no_grad():  # HF zero/one-initialises norms and biases: perturb so nothing is trivially equal
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias") or "mask_token" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def _masks(n, size, unit, patch, seed=0):
    gen = MaskGenerator(size, unit, patch, 0.6)  # SimMIM's generator: a fixed count of masked units
    return torch.stack([torch.from_numpy(gen(np.random.default_rng([seed, i]))) for i in range(n)])


def test_swinv2_simmim_loss_matches_transformers():
    hf = _swin_mim()
    ours = SimMIM(from_transformers(hf), norm_target=False).eval()
    copy_decoder_from_transformers(hf, ours)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    mask = _masks(3, 64, 16, 4)  # shifted windows, a clamped last stage, several heads
    with torch.no_grad():
        ref = hf(x, bool_masked_pos=mask.flatten(1).bool())
        out = ours(x, mask)
    assert ref.loss.item() > 0.1
    assert abs(out.loss.item() - ref.loss.item()) <= 1e-5 * ref.loss.item()
    assert (out.pred - ref.reconstruction).abs().max() < 1e-4


def test_from_a_local_directory(tmp_path):
    hf = _swin_mim()
    hf.save_pretrained(tmp_path / "swin")
    ours = from_transformers(tmp_path / "swin").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = hf.swinv2(x).last_hidden_state.transpose(1, 2).reshape(1, 128, 4, 4)
        assert (ours.forward_features(x) - ref).abs().max() < 1e-4
    with pytest.raises(FileNotFoundError, match="no config.json"):
        from_transformers(tmp_path)


def test_unsupported_model_type_is_refused():
    bert = transformers.BertModel(transformers.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                                          intermediate_size=8, vocab_size=10))
    with pytest.raises(ValueError, match="unsupported transformers model_type 'bert'"):
        from_transformers(bert)


def test_safetensors_roundtrip(tmp_path):
    torch.manual_seed(0)
    a = build_model("swinv2-cpu-t")
    with torch.no_grad():
        for p in a.parameters():
            p.add_(torch.randn_like(p))
    path = export_safetensors(a, tmp_path / "w.safetensors", {"model": "swinv2-cpu-t", "config": {"x": 1}})
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"model": "swinv2-cpu-t", "config": '{"x": 1}'}
    b = load_safetensors(build_model("swinv2-cpu-t"), path)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(a.eval().forward_features(x), b.eval().forward_features(x))
