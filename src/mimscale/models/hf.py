"""Weights from outside and to outside: Hugging Face ``transformers`` models in, ``safetensors`` out.

``transformers`` is only needed for ``from_transformers`` (it is a dev extra, imported lazily); nothing is
downloaded: a path must be a local directory written by ``save_pretrained``. The converters below map
transformers' parameter names onto ours, one per supported transformers ``model_type``.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file

from mimscale.errors import CheckpointError
from mimscale.models.layers import pair
from mimscale.models.swinv2 import SwinV2
from mimscale.models.vit import VisionTransformer
from mimscale.rundir import atomic_write


def swinv2_from_transformers(hf_model) -> SwinV2:
    """Build a ``SwinV2`` from a ``transformers`` ``Swinv2Model`` / ``Swinv2ForMaskedImageModeling`` and copy
    its encoder weights (the SimMIM decoder, pooler and classifier are not part of the backbone).

    HF keeps separate q/k/v Linears with an optional key bias; ours fuses them with the key bias fixed at
    zero (as the paper), so a nonzero HF key bias cannot be represented and raises.
    """
    hf = getattr(hf_model, "swinv2", hf_model)
    cfg = hf.config
    if getattr(cfg, "use_absolute_embeddings", False):
        raise ValueError("absolute position embeddings are not part of SwinV2-for-SimMIM")
    if cfg.hidden_act != "gelu":
        raise ValueError(f"only GELU MLPs are supported, got {cfg.hidden_act!r}")
    img = cfg.image_size if isinstance(cfg.image_size, int) else cfg.image_size[0]
    patch = cfg.patch_size if isinstance(cfg.patch_size, int) else cfg.patch_size[0]
    use_mask = hf.embeddings.mask_token is not None
    pws = tuple(cfg.pretrained_window_sizes or (0,) * len(cfg.depths))
    model = SwinV2(img_size=img, patch_size=patch, in_chans=cfg.num_channels, embed_dim=cfg.embed_dim,
                   depths=tuple(cfg.depths), num_heads=tuple(cfg.num_heads), window_size=cfg.window_size,
                   mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, drop_path_rate=cfg.drop_path_rate,
                   pretrained_window_sizes=pws, use_mask_token=use_mask, norm_eps=cfg.layer_norm_eps)
    src = hf.state_dict()
    dst = {
        "patch_embed.proj.weight": src["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": src["embeddings.patch_embeddings.projection.bias"],
        "patch_embed.norm.weight": src["embeddings.norm.weight"],
        "patch_embed.norm.bias": src["embeddings.norm.bias"],
        "norm.weight": src["layernorm.weight"],
        "norm.bias": src["layernorm.bias"],
    }
    if use_mask:
        dst["mask_token"] = src["embeddings.mask_token"]
    for i, depth in enumerate(cfg.depths):
        for j in range(depth):
            a, b = f"encoder.layers.{i}.blocks.{j}.", f"layers.{i}.blocks.{j}."
            att = a + "attention.self."
            if att + "key.bias" in src and src[att + "key.bias"].abs().max() > 0:
                raise ValueError(f"{att}key.bias is nonzero; SwinV2 has no key bias")
            dst[b + "attn.qkv.weight"] = torch.cat([src[att + n + ".weight"] for n in ("query", "key", "value")])
            if cfg.qkv_bias:
                dst[b + "attn.q_bias"] = src[att + "query.bias"]
                dst[b + "attn.v_bias"] = src[att + "value.bias"]
            dst[b + "attn.logit_scale"] = src[att + "logit_scale"]
            for k in ("0.weight", "0.bias", "2.weight"):
                dst[b + "attn.cpb_mlp." + k] = src[att + "continuous_position_bias_mlp." + k]
            pairs = {"attn.proj": "attention.output.dense", "norm1": "layernorm_before",
                     "norm2": "layernorm_after", "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}
            for ours, theirs in pairs.items():
                dst[b + ours + ".weight"] = src[a + theirs + ".weight"]
                dst[b + ours + ".bias"] = src[a + theirs + ".bias"]
        if i < len(cfg.depths) - 1:
            a, b = f"encoder.layers.{i}.downsample.", f"layers.{i}.downsample."
            dst[b + "reduction.weight"] = src[a + "reduction.weight"]
            dst[b + "norm.weight"] = src[a + "norm.weight"]
            dst[b + "norm.bias"] = src[a + "norm.bias"]
    model.load_state_dict(dst, strict=True)
    return model




def vit_from_transformers(hf_model: nn.Module) -> VisionTransformer:
    """Build ours from a ``transformers`` ``ViTModel`` / ``ViTForMaskedImageModeling`` and copy its weights.

    HF's order is ours: patch projection -> mask token -> prepend cls -> add position embedding. Handles
    the transformers 5 module names (``layers.i.attention.q_proj``, ``mlp.fc1``) and the 4.x ones
    (``encoder.layer.i.attention.attention.query``, ``intermediate.dense``). The MIM decoder is not copied.
    """
    vit = getattr(hf_model, "vit", hf_model)
    cfg = vit.config
    if cfg.hidden_act != "gelu":  # HF "gelu" is the exact erf GELU, as nn.GELU()
        raise ValueError(f"only hidden_act='gelu' is supported, got {cfg.hidden_act!r}")
    head_dim = getattr(cfg, "head_dim", None)
    if head_dim not in (None, cfg.hidden_size // cfg.num_attention_heads):
        raise ValueError(f"head_dim {head_dim} != hidden_size / num_attention_heads is not supported")
    patch = pair(cfg.patch_size)
    if patch[0] != patch[1]:
        raise ValueError(f"only square patches are supported, got {patch}")
    model = VisionTransformer(
        img_size=pair(cfg.image_size), patch_size=patch[0], in_chans=cfg.num_channels,
        embed_dim=cfg.hidden_size, depth=cfg.num_hidden_layers, num_heads=cfg.num_attention_heads,
        mlp_ratio=cfg.intermediate_size / cfg.hidden_size, qkv_bias=cfg.qkv_bias, drop_path_rate=0.0,
        pos_embed="abs", use_cls_token=True, layer_norm_eps=cfg.layer_norm_eps, use_mask_token=True)
    emb = vit.embeddings
    sd = {"cls_token": emb.cls_token, "pos_embed": emb.position_embeddings,
          "patch_embed.weight": emb.patch_embeddings.projection.weight,
          "patch_embed.bias": emb.patch_embeddings.projection.bias,
          "norm.weight": vit.layernorm.weight, "norm.bias": vit.layernorm.bias,
          # HF models built without use_mask_token keep our freshly initialised token.
          "mask_token": emb.mask_token if emb.mask_token is not None else model.mask_token}
    layers = vit.layers if hasattr(vit, "layers") else vit.encoder.layer
    for i, layer in enumerate(layers):
        att = layer.attention
        if hasattr(att, "q_proj"):
            q, k, v, o = att.q_proj, att.k_proj, att.v_proj, att.o_proj
        else:
            q, k, v, o = att.attention.query, att.attention.key, att.attention.value, att.output.dense
        fc1, fc2 = (layer.mlp.fc1, layer.mlp.fc2) if hasattr(layer, "mlp") else (
            layer.intermediate.dense, layer.output.dense)
        b = f"blocks.{i}."
        sd[b + "attn.qkv.weight"] = torch.cat([q.weight, k.weight, v.weight])
        if cfg.qkv_bias:
            sd[b + "attn.qkv.bias"] = torch.cat([q.bias, k.bias, v.bias])
        for ours, theirs in (("attn.proj", o), ("mlp.fc1", fc1), ("mlp.fc2", fc2),
                             ("norm1", layer.layernorm_before), ("norm2", layer.layernorm_after)):
            sd[b + ours + ".weight"], sd[b + ours + ".bias"] = theirs.weight, theirs.bias
    model.load_state_dict({k: v.detach() for k, v in sd.items()})  # strict: every one of ours is set
    return model


# transformers model_type -> converter
_CONVERTERS = {"swinv2": swinv2_from_transformers, "vit": vit_from_transformers}


def load_transformers_dir(path: Path) -> nn.Module:
    try:
        from transformers import AutoConfig, AutoModel, AutoModelForMaskedImageModeling
    except ImportError as e:  # a dev extra: say how to get it instead of failing obscurely
        raise ImportError("loading a transformers checkpoint needs `pip install transformers`") from e
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a transformers model directory (no config.json)")
    for weights in sorted(path.glob("*.bin")):  # pickles: refused before transformers unpickles them
        _refuse_code(weights)
    try:
        arch = AutoConfig.from_pretrained(path, local_files_only=True).architectures or []
        loader = AutoModelForMaskedImageModeling if any("MaskedImageModeling" in a for a in arch) else AutoModel
        return loader.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, pickle.UnpicklingError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: cannot load this transformers model: {why}") from None


def _refuse_code(weights: Path) -> None:
    """A ``pytorch_model.bin`` is a pickle: loading it may run code. It is read weights-only first, so a file
    that would run code (or is not a checkpoint) is one line and never unpickled in full."""
    try:
        torch.load(weights, map_location="meta", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{weights} would run code when loaded (only plain weights are read): "
                              f"{str(e).splitlines()[0] if str(e) else 'refused'}") from None
    except Exception as e:  # garbage bytes fail in many ways inside the unpickler: all are "not readable"
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{weights} is not a readable checkpoint: {why}") from None


def from_transformers(hf_model_or_path) -> nn.Module:
    """Our backbone with the weights of a ``transformers`` Swin V2 / ViT model (or a local directory)."""
    hf = load_transformers_dir(Path(hf_model_or_path)) if isinstance(hf_model_or_path, (str, Path)) else hf_model_or_path
    kind = getattr(hf.config, "model_type", None)
    if kind not in _CONVERTERS:
        raise ValueError(f"unsupported transformers model_type {kind!r}; supported: {', '.join(_CONVERTERS)}")
    return _CONVERTERS[kind](hf)


def copy_decoder_from_transformers(hf_mim: nn.Module, simmim: nn.Module) -> None:
    """Copy the 1x1-conv decoder of a ``*ForMaskedImageModeling`` into a :class:`SimMIM`'s decoder."""
    src, dst = hf_mim.decoder[0], simmim.decoder[0]
    if src.weight.shape != dst.weight.shape:
        raise ValueError(f"decoder shapes differ: transformers {tuple(src.weight.shape)} vs ours "
                         f"{tuple(dst.weight.shape)}")
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        dst.bias.copy_(src.bias)


def export_safetensors(model: nn.Module, path: str | Path, metadata: dict | None = None) -> Path:
    """Write the state dict (tensors only; buffers that are rebuilt are not in it) to a safetensors file.

    ``metadata`` (e.g. the run config) is stored as JSON strings in the file header.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    # save_file writes to a name, so the temp file is written through its descriptor as bytes instead.
    from safetensors.torch import save as to_bytes

    atomic_write(path, lambda f: f.write(to_bytes(tensors, metadata=meta)))
    return path


def load_safetensors(model: nn.Module, path: str | Path, strict: bool = True) -> nn.Module:
    model.load_state_dict(load_file(str(path)), strict=strict)
    return model
