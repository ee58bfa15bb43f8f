"""Building blocks shared by the backbone families (SwinV2, ViT): stochastic depth, the MLP, the mask-token
blend, init."""

from __future__ import annotations

import torch
import torch.nn as nn


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability ``drop_prob``.

    Survivors are scaled by 1/keep so the branch's expected value is unchanged at eval time.
    """
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # one draw per sample, broadcast over tokens/channels
    mask = x.new_empty(shape).bernoulli_(keep)
    return x * mask.div_(keep)


def drop_path_rates(rate: float, n_blocks: int) -> list[float]:
    """Stochastic depth rising linearly from 0 at the first block to ``rate`` at the last (plain Python, so
    it also works when the model is built on the meta device)."""
    return [rate * k / max(n_blocks - 1, 1) for k in range(n_blocks)]


def blend_mask_token(x: torch.Tensor, token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SimMIM's input: ``x * (1 - w) + token * w`` with w = 1 at masked tokens, after the patch embedding
    (docs/METHOD.md, Encoder input). ``token`` and ``mask`` broadcast against ``x``."""
    w = mask.to(x.dtype)
    return x * (1.0 - w) + token.to(x.dtype) * w


def pair(v) -> tuple[int, int]:
    """An int or a (h, w) sequence as (h, w)."""
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


class DropPath(nn.Module):
    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


class Mlp(nn.Module):
    """fc1 -> act -> fc2 (the transformer feed-forward block; no dropout, none of our recipes use it)."""

    def __init__(self, in_features: int, hidden_features: int | None = None, out_features: int | None = None,
                 act: type[nn.Module] = nn.GELU):
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def trunc_normal_(tensor: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    """Truncated normal as the reference code draws it (timm ``trunc_normal_(std=.02)``): the cut is at
    +-2 in absolute units, so for std .02 it is effectively an untruncated normal. Kept for parity."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2.0, b=2.0)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Default init for ``model.apply``: Linear trunc-normal(std) with zero bias; LayerNorm 1 / 0."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
