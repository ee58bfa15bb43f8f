"""Weights from outside and to outside: Hugging Face ``transformers`` models in, ``safetensors`` out.

``transformers`` is only needed for ``from_transformers`` (it is a dev extra, imported lazily); nothing is
downloaded: a path must be a local directory written by ``save_pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from mimscale.models.swinv2 import from_transformers_swinv2
from mimscale.models.vit import from_transformers_vit

_CONVERTERS = {"swinv2": from_transformers_swinv2, "vit": from_transformers_vit}


def _load_local(path: Path) -> nn.Module:
    try:
        from transformers import AutoConfig, AutoModel, AutoModelForMaskedImageModeling
    except ImportError as e:  # a dev extra: say how to get it instead of failing obscurely
        raise ImportError("loading a transformers checkpoint needs `pip install transformers`") from e
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a transformers model directory (no config.json)")
    arch = AutoConfig.from_pretrained(path, local_files_only=True).architectures or []
    loader = AutoModelForMaskedImageModeling if any("MaskedImageModeling" in a for a in arch) else AutoModel
    return loader.from_pretrained(path, local_files_only=True)


def from_transformers(hf_model_or_path) -> nn.Module:
    """Our backbone with the weights of a ``transformers`` Swin V2 / ViT model (or a local directory)."""
    hf = _load_local(Path(hf_model_or_path)) if isinstance(hf_model_or_path, (str, Path)) else hf_model_or_path
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
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_safetensors(model: nn.Module, path: str | Path, strict: bool = True) -> nn.Module:
    model.load_state_dict(load_file(str(path)), strict=strict)
    return model
