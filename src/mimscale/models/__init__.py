"""Backbones. Every backbone has: ``forward_features(x, mask=None)`` -> (B, num_features, H/stride, W/stride),
``forward_intermediates(x, mask=None)`` -> list of per-block maps, ``num_features``, ``stride``,
``patch_size``, ``num_layers`` and ``layer_id(param_name)`` for layer-wise LR decay,
``no_weight_decay()`` -> the parameter names exempt from weight decay beyond 1-D parameters and biases
(``engine/params.py``), and ``finetune_geometry()`` -> the
keywords a fine-tuning build takes from this pre-training model (e.g. Swin V2's pretrained windows)."""

from mimscale.errors import UnknownModelError
from mimscale.models.hf import export_safetensors, from_transformers, load_safetensors
from mimscale.models.registry import build_model, list_models, model_kwargs

__all__ = ["build_model", "list_models", "model_kwargs", "UnknownModelError", "from_transformers",
           "export_safetensors", "load_safetensors"]
