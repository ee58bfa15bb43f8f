"""Swin Transformer V2 backbone for SimMIM (docs/METHOD.md, Swin V2), with the study's size presets at the bottom.

Parameter and buffer names follow the reference implementation (microsoft/Swin-Transformer
``swin_transformer_v2.py``: ``patch_embed.proj``, ``layers.i.blocks.j.attn.qkv``, ``...attn.cpb_mlp``,
``layers.i.downsample.reduction``, ``norm``, ``mask_token``) so its checkpoints' encoder weights load by name
once the stored index/mask buffers (``relative_*``, ``attn_mask``), which we always rebuild, are dropped.

Layout: activations travel between blocks as (B, H, W, C): the shifted-window roll is on spatial axes,
window partition folds into the q/k/v head split, and per-block intermediate maps are plain permuted views. Attention is ``F.scaled_dot_product_attention``
with the cosine-normalised queries pre-multiplied by the per-head logit scale (so ``scale=1``) and the
continuous position bias plus the shifted-window mask passed as one additive ``attn_mask``; on CPU the same
arithmetic is written out (see ``_attention``).

One family, one file (about 420 lines): attention, blocks, stages, the backbone and its presets read together;
the transformers converter lives in ``models/hf.py``, shared layers in ``models/layers.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mimscale.config_keys import Check, between, each, positive
from mimscale.errors import ConfigError
from mimscale.models.layers import (
    DropPath,
    Mlp,
    blend_mask_token,
    drop_path_rates,
    init_weights,
    trunc_normal_,
)

# Logit scale is clamped at ln(100): the paper's bound on the cosine-attention temperature.
_LOGIT_SCALE_MAX = math.log(100.0)
# The reference fills cross-region pairs of a shifted window with -100 (not -inf), kept for parity.
_SHIFT_MASK_FILL = -100.0


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, nW, window*window, C), windows in row-major order."""
    B, H, W, C = x.shape
    x = x.view(B, H // window, window, W // window, window, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, (H // window) * (W // window), window * window, C)


def log_spaced_coords(window: int, pretrained_window: int = 0) -> torch.Tensor:
    """Relative offsets of a window, ((2W-1)^2, 2), normalised to [-1, 1] by (W-1) (or by the pre-training
    window's W-1 when fine-tuning at another window), times 8, then sign(x) log2(|x|+1) / log2(8)."""
    r = torch.arange(-(window - 1), window, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(r, r, indexing="ij"), dim=-1)  # (2W-1, 2W-1, 2) as (dh, dw)
    if pretrained_window > 0:
        table = table / (pretrained_window - 1)
    elif window > 1:
        table = table / (window - 1)
    table = table * 8
    table = torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)
    return table.reshape(-1, 2)


def relative_position_index(window: int) -> torch.Tensor:
    """(N, N) index of token pair (i, j) of a window into the flattened (2W-1)^2 offset table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)  # (2, N, N), offsets shifted to >= 0
    return rel[0] * (2 * window - 1) + rel[1]


def shifted_window_mask(H: int, W: int, window: int, shift: int) -> torch.Tensor:
    """(nW, N, N) additive mask of a cyclically shifted (H, W) map: 0 within a region, -100 across.

    After the roll, the last window row/column mixes tokens from the two image edges; tokens are labelled
    by which of the 3 bands (per axis) they came from and may only attend to tokens of the same label.
    """
    def bands(n: int) -> torch.Tensor:
        i = torch.arange(n)
        return (i >= n - window).long() + (i >= n - shift).long()

    label = (bands(H)[:, None] * 3 + bands(W)[None, :]).view(1, H, W, 1)
    label = window_partition(label, window).squeeze(0).squeeze(-1)  # (nW, N)
    diff = label[:, None, :] - label[:, :, None]
    return torch.zeros(diff.shape).masked_fill_(diff != 0, _SHIFT_MASK_FILL)


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T + bias) v with q already scaled. Fused SDPA on accelerators; on CPU the explicit form:
    SDPA's CPU kernels were ~4x slower for window-sized sequences in earlier PyTorch and are on par in 2.13
    (benchmarks/ablation.py: 0.97-0.99x), so the CPU path stays the plain one."""
    if q.device.type == "cpu":
        return torch.softmax(torch.matmul(q, k.transpose(-2, -1)) + bias, dim=-1) @ v
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)


class WindowAttention(nn.Module):
    """Scaled cosine attention with a log-spaced continuous position bias within each window of a map."""

    def __init__(self, dim: int, num_heads: int, window: int, qkv_bias: bool = True, pretrained_window: int = 0):
        super().__init__()
        self.dim, self.num_heads, self.window = dim, num_heads, window
        self.pretrained_window = pretrained_window
        self.logit_scale = nn.Parameter(torch.full((num_heads, 1, 1), math.log(10.0)))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 512, bias=True), nn.ReLU(inplace=True),
                                     nn.Linear(512, num_heads, bias=False))
        # Derived from the window alone, so non-persistent: a checkpoint saved at window 12 loads into a
        # model at window 14 and these are simply rebuilt (the log-CPB needs no interpolation).
        self.register_buffer("relative_coords_table", log_spaced_coords(window, pretrained_window), persistent=False)
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        # One (C, 3C) matmul for q, k, v; the k bias is fixed at zero as in the reference.
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.proj = nn.Linear(dim, dim)

    def position_bias(self) -> torch.Tensor:
        """(heads, N, N) = 16 * sigmoid(cpb_mlp(coords)) gathered by relative index; once per forward."""
        # The sigmoid is elementwise, so it runs on the (2W-1)^2 table before the gather to N^2 = W^4 pairs.
        table = 16 * torch.sigmoid(self.cpb_mlp(self.relative_coords_table))  # ((2W-1)^2, heads)
        n = self.window * self.window
        # F.embedding rather than table[index]: same gather, but its backward is a dense row-wise index_add,
        # where indexing's backward (accumulating index_put) was ~7x slower on CPU (2.4 ms/block at C=96).
        bias = F.embedding(self.relative_position_index.view(-1), table).view(n, n, self.num_heads)
        return bias.permute(2, 0, 1).contiguous()  # fused attention kernels want a unit-stride last dim

    def forward(self, x: torch.Tensor, shift_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, H, W, C) map (already shifted), H and W multiples of the window -> (B, H, W, C).

        Window partition is folded into the q/k/v permute and window reverse into the output permute, so
        the map is copied once on the way in and once on the way out (instead of partition + split heads,
        merge heads + reverse).
        """
        B, H, W, C = x.shape
        h, w = self.num_heads, self.window
        nh, nw, N = H // w, W // w, w * w
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).view(B, H, W, 3, h, C // h)
        scale = torch.clamp(self.logit_scale, max=_LOGIT_SCALE_MAX).exp().view(h, 1)  # per-head temperature
        # Cosine similarity times the temperature: normalise, fold the temperature into q, SDPA scale=1.
        # Casts: under autocast the norms run in fp32 while v stays in the low precision.
        q, k, v = qkv.unbind(3)  # (B, H, W, h, d)
        q = (q * (scale / q.norm(dim=-1, keepdim=True).clamp_min(1e-12))).to(v.dtype)
        k = (k / k.norm(dim=-1, keepdim=True).clamp_min(1e-12)).to(v.dtype)

        def windows(t: torch.Tensor) -> torch.Tensor:  # (B, H, W, h, d) -> (B, nW, h, N, d), one copy
            t = t.view(B, nh, w, nw, w, h, -1).permute(0, 1, 3, 5, 2, 4, 6)
            return t.reshape(B, nh * nw, h, N, -1)

        q, k, v = windows(q), windows(k), windows(v)
        attn_bias = self.position_bias()  # (h, N, N)
        if shift_mask is None:
            # Windows fold into the batch; the bias broadcasts over all of them.
            q, k, v = (t.view(B * nh * nw, h, N, -1) for t in (q, k, v))
            attn_bias = attn_bias.unsqueeze(0)
        else:
            # Windows fold into the head axis so the per-window mask broadcasts over the batch only
            # (no B-fold copy of the (nW, h, N, N) bias).
            q, k, v = (t.view(B, nh * nw * h, N, -1) for t in (q, k, v))
            attn_bias = (attn_bias.unsqueeze(0) + shift_mask.unsqueeze(1)).reshape(1, nh * nw * h, N, N)
        out = _attention(q, k, v, attn_bias.to(q.dtype))
        out = out.view(B, nh, nw, h, w, w, -1).permute(0, 1, 4, 2, 5, 3, 6).reshape(B, H, W, C)
        return self.proj(out)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.num_heads}, window={self.window}, pretrained={self.pretrained_window}"


class SwinV2Block(nn.Module):
    """Res-post-norm block: x + drop_path(norm1(attn(x))), then x + drop_path(norm2(mlp(x)))."""

    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, window: int, shift: int,
                 mlp_ratio: float, qkv_bias: bool, drop_path: float, pretrained_window: int, norm_eps: float):
        super().__init__()
        # A stage no larger than the window attends globally: one window, nothing to shift.
        if min(resolution) <= window:
            window, shift = min(resolution), 0
        self.window, self.shift = window, shift
        self.attn = WindowAttention(dim, num_heads, window, qkv_bias, pretrained_window)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        # The shifted-window mask for the configured resolution, built once; other input sizes (dense tasks)
        # build theirs per forward. Non-persistent: a function of resolution and window only.
        self.padded = tuple(r + (-r) % window for r in resolution)
        mask = shifted_window_mask(*self.padded, window, shift) if shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def shift_mask(self, H: int, W: int, device: torch.device) -> torch.Tensor | None:
        if self.shift == 0:
            return None
        if (H, W) == self.padded:
            return self.attn_mask
        return shifted_window_mask(H, W, self.window, self.shift).to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        w, s = self.window, self.shift
        # Inputs whose size is not a multiple of the window (e.g. segmentation crops) are zero-padded.
        pad_h, pad_w = (-H) % w, (-W) % w
        y = F.pad(x, (0, 0, 0, pad_w, 0, pad_h)) if pad_h or pad_w else x
        Hp, Wp = H + pad_h, W + pad_w
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        y = self.attn(y, self.shift_mask(Hp, Wp, x.device))
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        if pad_h or pad_w:
            y = y[:, :H, :W]
        x = x + self.drop_path(self.norm1(y))
        return x + self.drop_path(self.norm2(self.mlp(x)))


class PatchMerging(nn.Module):
    """2x2 neighbourhood gather -> Linear(4C, 2C, no bias) -> LayerNorm(2C) (V2: norm after reduction)."""

    def __init__(self, dim: int, norm_eps: float):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[1:3]
        if H % 2 or W % 2:
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        # Reference order x0..x3 = (even, even), (odd, even), (even, odd), (odd, odd) in (row, col).
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.norm(self.reduction(x))


class SwinV2Stage(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int, window: int,
                 mlp_ratio: float, qkv_bias: bool, drop_paths: list[float], pretrained_window: int,
                 downsample: bool, norm_eps: float):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinV2Block(dim, resolution, num_heads, window, 0 if j % 2 == 0 else window // 2, mlp_ratio,
                        qkv_bias, drop_paths[j], pretrained_window, norm_eps)
            for j in range(depth)
        )
        self.downsample = PatchMerging(dim, norm_eps) if downsample else None


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, norm_eps: float):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, H/p, W/p, C). The conv's kernel equals its stride, so it is a matmul over
        non-overlapping patches; written as one, it skips CPU im2col and lands channels-last directly."""
        B, Ci, H, W = x.shape
        p = self.proj.kernel_size[0]
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {p}")
        x = x.reshape(B, Ci, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5).reshape(B, H // p, W // p, Ci * p * p)
        return self.norm(F.linear(x, self.proj.weight.flatten(1), self.proj.bias))


class SwinV2(nn.Module):
    """Swin Transformer V2 encoder with a SimMIM mask token.

    ``forward_features(x, mask)`` -> (B, num_features, H/stride, W/stride) after the final LayerNorm;
    ``mask`` is (B, H/patch, W/patch) (or flattened (B, L)) with 1 = masked.
    """

    def __init__(self, *, img_size: int = 192, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 96,
                 depths: tuple[int, ...] = (2, 2, 18, 2), num_heads: tuple[int, ...] = (3, 6, 12, 24),
                 window_size: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path_rate: float = 0.1, pretrained_window_sizes: tuple[int, ...] = (0, 0, 0, 0),
                 use_mask_token: bool = True, norm_eps: float = 1e-5):
        super().__init__()
        depths, num_heads = tuple(depths), tuple(num_heads)
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {depths} and num_heads {num_heads} must have one entry per stage")
        pretrained_window_sizes = tuple(pretrained_window_sizes)
        if len(pretrained_window_sizes) != len(depths):
            if any(pretrained_window_sizes):
                raise ValueError(f"pretrained_window_sizes {pretrained_window_sizes} needs {len(depths)} entries")
            pretrained_window_sizes = (0,) * len(depths)  # the all-zero default fits any stage count
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.embed_dim, self.depths, self.num_heads = embed_dim, depths, num_heads
        self.window_size, self.pretrained_window_sizes = window_size, pretrained_window_sizes
        self.num_stages = len(depths)
        self.num_layers = sum(depths) + 2  # layer-decay ids: embedding, one per block, final norm
        self.num_features = embed_dim * 2 ** (self.num_stages - 1)
        self.stride = patch_size * 2 ** (self.num_stages - 1)

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, norm_eps)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if use_mask_token else None
        dpr = drop_path_rates(drop_path_rate, sum(depths))
        grid = img_size // patch_size
        self.layers = nn.ModuleList()
        for i in range(self.num_stages):
            res = (grid // 2**i, grid // 2**i)
            self.layers.append(SwinV2Stage(
                embed_dim * 2**i, res, depths[i], num_heads[i], window_size, mlp_ratio, qkv_bias,
                dpr[sum(depths[:i]): sum(depths[: i + 1])], pretrained_window_sizes[i],
                downsample=i < self.num_stages - 1, norm_eps=norm_eps))
        self.norm = nn.LayerNorm(self.num_features, eps=norm_eps)
        self.init_weights()

    def init_weights(self) -> None:
        self.apply(init_weights)
        if self.mask_token is not None:
            trunc_normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, WindowAttention):
                nn.init.constant_(m.logit_scale, math.log(10.0))
            if isinstance(m, SwinV2Block):
                # Res-post-norm zero init: every block starts as the identity (reference _init_respostnorm).
                for norm in (m.norm1, m.norm2):
                    nn.init.zeros_(norm.weight)
                    nn.init.zeros_(norm.bias)

    def embed(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Patch embedding + LayerNorm, then masked tokens replaced by the mask token: (B, h, w, C)."""
        x = self.patch_embed(x)
        if mask is not None:
            if self.mask_token is None:
                raise ValueError("this model was built with use_mask_token=False and cannot take a mask")
            x = blend_mask_token(x, self.mask_token.view(1, 1, 1, -1), mask.reshape(*x.shape[:3], 1))
        return x

    def _run(self, x: torch.Tensor, mask: torch.Tensor | None, collect: bool):
        x = self.embed(x, mask)
        maps = []
        for stage in self.layers:
            for block in stage.blocks:
                x = block(x)
                if collect:
                    maps.append(x.permute(0, 3, 1, 2))
            if stage.downsample is not None:
                x = stage.downsample(x)
        return x, maps

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x, _ = self._run(x, mask, collect=False)
        return self.norm(x).permute(0, 3, 1, 2)

    def forward_intermediates(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """One (B, C_i, h_i, w_i) map per block, in order, each before any patch merging; the last one is
        the last block's output *before* the final LayerNorm (``forward_features`` applies it)."""
        return self._run(x, mask, collect=True)[1]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_features(x, mask)

    def layer_id(self, name: str) -> int:
        """Layer-decay id of a parameter name (docs/METHOD.md, Fine-tuning and other evaluations); tolerates a prefix such as ``encoder.``."""
        if re.search(r"(^|\.)(mask_token|patch_embed)(\.|$)", name):
            return 0
        m = re.search(r"(^|\.)layers\.(\d+)\.blocks\.(\d+)\.", name)
        if m:
            i, j = int(m.group(2)), int(m.group(3))
            return sum(self.depths[:i]) + j + 1
        m = re.search(r"(^|\.)layers\.(\d+)\.downsample\.", name)
        if m:
            return sum(self.depths[: int(m.group(2)) + 1])
        return self.num_layers - 1

    def finetune_geometry(self) -> dict:
        """Keywords a fine-tuning build takes from this (pre-training) model: its effective per-stage windows.

        A stage no larger than the window attends over its whole map, so at 192 px / window 12 the stages see
        (12, 12, 12, 6). Fine-tuning at another window or size normalises the log-spaced position coordinates
        by these, so the pre-trained position-bias MLP sees the inputs it was trained on.
        """
        if any(self.pretrained_window_sizes):  # this model was itself built for continued training
            return {"pretrained_window_sizes": self.pretrained_window_sizes}
        return {"pretrained_window_sizes": tuple(stage.blocks[0].window for stage in self.layers)}

    def no_weight_decay(self) -> set[str]:
        """Names exempt from weight decay beyond the engine's rule for 1-D parameters and biases
        (``engine/params.py``): the mask token, the whole continuous-position-bias MLP and the logit scales
        (docs/METHOD.md, Swin V2)."""
        special = ("mask_token", "cpb_mlp", "logit_scale", "relative_position")
        return {name for name, _ in self.named_parameters() if any(k in name for k in special)}


MODEL_CLASS = SwinV2

# Size presets. The study's models (docs/METHOD.md, Swin V2): patch 4, window 12 at 192 px, head dim 32; backbone
# parameter counts include the mask token and exclude the SimMIM decoder (checked on the meta device).
_STUDY = dict(img_size=192, patch_size=4, depths=(2, 2, 18, 2), window_size=12)
# CPU presets: the same block design at 32 px with patch 4 and window 4: two stages (8x8 tokens in 2x2
# shifted windows, then 4x4 tokens where the window is clamped and the shift is 0), stride 8, so the demo's
# 8 px mask units (16 per image, 10 masked) align with the encoder's output grid. Patch 2 (256 tokens)
# made a demo grid ~3x slower for no gain in what it shows; parameters grow ~4x per preset.
#
# | preset       | C  | depths | heads | params  | SimMIM train img/s, batch 64, fp32, AdamW, 1 thread |
# |--------------|----|--------|-------|---------|-----------------------------------------------------|
# | swinv2-cpu-t | 16 | 1, 1   | 1, 2  | 0.024 M | ~1760                                               |
# | swinv2-cpu-s | 16 | 2, 2   | 1, 2  | 0.044 M | ~1450                                               |
# | swinv2-cpu-m | 32 | 2, 4   | 2, 4  | 0.255 M | ~880                                                |
# | swinv2-cpu-l | 64 | 2, 4   | 2, 4  | 0.948 M | ~450                                                |
#
# Measured with ``benchmarks/train_step.py --presets ... --threads 1`` on a 2-core VM shared with other jobs.
_CPU = dict(img_size=32, patch_size=4, window_size=4, drop_path_rate=0.0)

def check_kwargs(kw: dict) -> None:
    """Every constructor keyword (defaults filled in) by the project's checks: a one-line ConfigError instead of
    a traceback from deep inside the constructor, or a model that trains to "done" with stages of no blocks."""
    def is_list(v) -> bool:  # a list, a tuple or OmegaConf's list node
        return isinstance(v, Sequence) and not isinstance(v, str)

    stages = Check(lambda v: is_list(v) and len(v) > 0, "a list with one entry per stage")
    stages("model depths", kw["depths"])
    stages("model num_heads", kw["num_heads"])
    Check(is_list, "a list")("model pretrained_window_sizes", kw["pretrained_window_sizes"])
    depths, heads = list(kw["depths"]), list(kw["num_heads"])
    if len(depths) != len(heads):
        raise ConfigError(f"model depths {depths} and num_heads {heads} must have one entry per stage")
    each(positive(), "all at least 1 (a stage with no blocks)", verb="must be")("model depths", depths)
    each(positive(), "all at least 1", verb="must be")("model num_heads", heads)
    each(Check(lambda v: v >= 0, ""), "all >= 0")("model pretrained_window_sizes", list(kw["pretrained_window_sizes"]))
    positive()("model embed_dim", kw["embed_dim"])
    positive()("model patch_size", kw["patch_size"])
    positive()("model window_size", kw["window_size"])
    positive()("model img_size", kw["img_size"])
    positive()("model mlp_ratio", kw["mlp_ratio"])
    positive()("model norm_eps", kw["norm_eps"])
    between(0, 1, False, True)("model drop_path_rate", kw["drop_path_rate"])
    if kw["img_size"] % kw["patch_size"]:
        raise ConfigError(f"model img_size {kw['img_size']} is not a multiple of its patch_size {kw['patch_size']}")
    for i, h in enumerate(heads):
        if (kw["embed_dim"] * 2**i) % h:
            raise ConfigError(f"model stage {i + 1} width {kw['embed_dim'] * 2**i} (embed_dim x 2^{i}) is not a "
                              f"multiple of its num_heads {h}")


PRESETS: dict[str, dict] = {
    "swinv2-s": dict(_STUDY, embed_dim=96, num_heads=(3, 6, 12, 24)),  # 48.96M (paper 49.0M)
    "swinv2-b": dict(_STUDY, embed_dim=128, num_heads=(4, 8, 16, 32)),  # 86.89M (86.9M)
    "swinv2-l": dict(_STUDY, embed_dim=192, num_heads=(6, 12, 24, 48)),  # 195.20M (195.2M)
    "swinv2-h": dict(_STUDY, embed_dim=352, num_heads=(11, 22, 44, 88)),  # 655.21M (655.2M)
    "swinv2-g": dict(_STUDY, embed_dim=448, num_heads=(14, 28, 56, 112)),  # 1060.98M (1061.0M)
    "swinv2-cpu-t": dict(_CPU, embed_dim=16, depths=(1, 1), num_heads=(1, 2)),
    "swinv2-cpu-s": dict(_CPU, embed_dim=16, depths=(2, 2), num_heads=(1, 2)),
    "swinv2-cpu-m": dict(_CPU, embed_dim=32, depths=(2, 4), num_heads=(2, 4)),
    "swinv2-cpu-l": dict(_CPU, embed_dim=64, depths=(2, 4), num_heads=(2, 4)),
}
