"""Vision Transformer backbone for SimMIM (docs/METHOD.md, ViT).

Pre-norm blocks (optional layer scale), final LayerNorm, a learned mask token that replaces masked
patch embeddings right after the patch projection (before position embedding and the cls token, the
order HF ``ViTEmbeddings`` and microsoft/SimMIM use), and one of four position encodings:

- ``"abs"``: learned absolute embedding (ViT / HF); bicubically interpolated at other resolutions.
- ``"sincos"``: fixed 2-D sin-cos (MAE); recomputed at other resolutions. Tiny CPU ViTs need it: a
  learned one gave a 400-700 iteration loss plateau in a feasibility run of the demo study.
- ``"rel"``: BEiT/SimMIM relative position bias, a table per block, or one table shared by all blocks
  with ``rel_pos_shared=True`` (SimMIM's ViT pre-training config); with a cls token the table has 3
  extra entries (cls->token, token->cls, cls->cls).
- ``"none"``.

Outputs are token maps (B, C, H/patch, W/patch); the cls token, when used, is dropped from them.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mimscale.config_keys import between, each, one_of, positive
from mimscale.errors import ConfigError
from mimscale.models.layers import (
    DropPath,
    Mlp,
    blend_mask_token,
    drop_path_rates,
    init_weights,
    pair,
    trunc_normal_,
)

POS_EMBEDS = ("abs", "sincos", "rel", "none")
_REL_TABLE = "relative_position_bias_table"


def sincos_2d(dim: int, grid: tuple[int, int], device=None) -> torch.Tensor:
    """(gh*gw, dim) fixed embedding: first half encodes the row, second half the column (MAE layout:
    each half is [sin(pos * w_i), cos(pos * w_i)] with w_i = 10000^(-i / (dim/4)))."""
    if dim % 4 != 0:
        raise ValueError(f"sincos position embedding needs embed_dim divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64, device=device) / (dim // 4))
    ys, xs = torch.meshgrid(torch.arange(grid[0], dtype=torch.float64, device=device),
                            torch.arange(grid[1], dtype=torch.float64, device=device), indexing="ij")

    def embed(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([embed(ys), embed(xs)], dim=1).float()


def relative_position_index(grid: tuple[int, int], cls: bool) -> torch.Tensor:
    """(N, N) long index into the relative table, N = gh*gw (+1 with cls, the cls entries last)."""
    gh, gw = grid
    coords = torch.stack(torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, n, n) offsets in patches
    index = (rel[0] + gh - 1) * (2 * gw - 1) + (rel[1] + gw - 1)
    if not cls:
        return index
    size = (2 * gh - 1) * (2 * gw - 1)
    full = torch.empty(gh * gw + 1, gh * gw + 1, dtype=torch.long)
    full[1:, 1:] = index
    full[0, :] = size  # cls -> token
    full[:, 0] = size + 1  # token -> cls
    full[0, 0] = size + 2  # cls -> cls
    return full


def resize_rel_table(table: torch.Tensor, old: tuple[int, int], new: tuple[int, int], cls: bool) -> torch.Tensor:
    """Bicubic resize of the (2gh-1)(2gw-1) offsets; align_corners keeps offset 0 at the centre and maps
    the largest offsets onto each other (the stretch semantics of interpolating an absolute embedding)."""
    if old == new:
        return table
    extra = table[-3:] if cls else table[:0]
    spatial = table[: table.shape[0] - extra.shape[0]]
    heads = table.shape[1]
    spatial = spatial.reshape(1, 2 * old[0] - 1, 2 * old[1] - 1, heads).permute(0, 3, 1, 2)
    spatial = F.interpolate(spatial.float(), size=(2 * new[0] - 1, 2 * new[1] - 1), mode="bicubic",
                            align_corners=True).to(table.dtype)
    return torch.cat([spatial.permute(0, 2, 3, 1).reshape(-1, heads), extra], dim=0)


def resize_abs_pos_embed(pe: torch.Tensor, old: tuple[int, int], new: tuple[int, int], cls: bool) -> torch.Tensor:
    """(1, cls + gh*gw, C) learned embedding to another grid; bicubic, align_corners=False (as HF)."""
    if old == new:
        return pe
    head, body = pe[:, : int(cls)], pe[:, int(cls):]
    body = body.reshape(1, old[0], old[1], -1).permute(0, 3, 1, 2)
    body = F.interpolate(body.float(), size=new, mode="bicubic", align_corners=False).to(pe.dtype)
    return torch.cat([head, body.flatten(2).transpose(1, 2)], dim=1)


def _square_grid(n: int, what: str) -> tuple[int, int]:
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"cannot infer the grid of a checkpoint {what} with {n} positions (not square)")
    return side, side


class RelativePositionBias(nn.Module):
    """A learned per-head bias for each 2-D patch offset, gathered into an additive (heads, N, N) mask."""

    def __init__(self, grid: tuple[int, int], num_heads: int, cls: bool):
        super().__init__()
        self.grid, self.cls = grid, cls
        size = (2 * grid[0] - 1) * (2 * grid[1] - 1) + (3 if cls else 0)
        # zeros: every block starts with plain content attention (BEiT/SimMIM init).
        self.relative_position_bias_table = nn.Parameter(torch.zeros(size, num_heads))
        # Not persistent: rebuilt from the grid, so checkpoints load at any resolution.
        self.register_buffer("index", relative_position_index(grid, cls), persistent=False)

    def forward(self, grid: tuple[int, int]) -> torch.Tensor:
        table, index = self.relative_position_bias_table, self.index
        if grid != self.grid:
            table = resize_rel_table(table, self.grid, grid, self.cls)
            index = relative_position_index(grid, self.cls).to(table.device)
        n = index.shape[0]
        return table[index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, rel_grid=None, cls: bool = False):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        # One fused projection; with qkv_bias the key bias is redundant (softmax is shift invariant
        # per query) but kept so ViT/HF checkpoints map one to one.
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_bias = RelativePositionBias(rel_grid, num_heads, cls) if rel_grid is not None else None

    def forward(self, x: torch.Tensor, grid: tuple[int, int], bias: torch.Tensor | None = None) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        if self.rel_pos_bias is not None:
            own = self.rel_pos_bias(grid)
            bias = own if bias is None else bias + own
        if bias is not None:
            bias = bias.unsqueeze(0).to(q.dtype)  # SDPA wants a float mask in the query's dtype (autocast)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm: x + drop_path(g1 * attn(norm1(x))), x + drop_path(g2 * mlp(norm2(x)))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float,
                 eps: float, init_values: float | None, rel_grid=None, cls: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias, rel_grid, cls)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(round(dim * mlp_ratio)), act=nn.GELU)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if init_values is not None:  # layer scale (CaiT/BEiT; SimMIM ViT uses 0.1)
            self.gamma_1 = nn.Parameter(torch.full((dim,), float(init_values)))
            self.gamma_2 = nn.Parameter(torch.full((dim,), float(init_values)))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor, grid: tuple[int, int], bias: torch.Tensor | None = None) -> torch.Tensor:
        a = self.attn(self.norm1(x), grid, bias)
        x = x + self.drop_path(a if self.gamma_1 is None else self.gamma_1 * a)
        m = self.mlp(self.norm2(x))
        return x + self.drop_path(m if self.gamma_2 is None else self.gamma_2 * m)


class VisionTransformer(nn.Module):
    def __init__(self, *, img_size=224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path_rate: float = 0.1, pos_embed: str = "abs", use_cls_token: bool = False,
                 layer_norm_eps: float = 1e-6, init_values: float | None = None, use_mask_token: bool = True,
                 rel_pos_shared: bool = False):
        super().__init__()
        if pos_embed not in POS_EMBEDS:
            raise ValueError(f"pos_embed must be one of {POS_EMBEDS}, got {pos_embed!r}")
        self.img_size = pair(img_size)
        if self.img_size[0] % patch_size or self.img_size[1] % patch_size:
            raise ValueError(f"img_size {self.img_size} is not divisible by patch_size {patch_size}")
        self.grid = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.patch_size = self.stride = patch_size
        self.num_features = self.embed_dim = embed_dim
        self.depth, self.num_layers = depth, depth + 2
        self.pos_embed_type = pos_embed
        cls = bool(use_cls_token)
        num_patches = self.grid[0] * self.grid[1]

        self.patch_embed = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if cls else None
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if use_mask_token else None
        if pos_embed == "abs":
            self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + int(cls), embed_dim))
        elif pos_embed == "sincos":
            # A buffer, not a parameter; not persistent, so it is never stale in a checkpoint.
            self.register_buffer("pos_embed", sincos_2d(embed_dim, self.grid)[None], persistent=False)
        else:
            self.pos_embed = None
        shared = pos_embed == "rel" and rel_pos_shared
        self.rel_pos_bias = RelativePositionBias(self.grid, num_heads, cls) if shared else None
        block_rel_grid = self.grid if pos_embed == "rel" and not shared else None

        dpr = drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, dpr[i], layer_norm_eps, init_values,
                  block_rel_grid, cls)
            for i in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self._init_weights()

    def _init_weights(self) -> None:
        # BEiT/SimMIM init: trunc-normal .02 everywhere, then each residual branch's output projection
        # scaled by 1/sqrt(2 * layer) so deeper blocks start closer to identity.
        self.apply(init_weights)
        trunc_normal_(self.patch_embed.weight)
        nn.init.zeros_(self.patch_embed.bias)
        for p in (self.cls_token, self.mask_token):
            if p is not None:
                trunc_normal_(p)
        if isinstance(self.pos_embed, nn.Parameter):
            trunc_normal_(self.pos_embed)
        with torch.no_grad():
            for i, blk in enumerate(self.blocks):
                blk.attn.proj.weight.div_(math.sqrt(2.0 * (i + 1)))
                blk.mlp.fc2.weight.div_(math.sqrt(2.0 * (i + 1)))

    # ---- forward -------------------------------------------------------------------------------
    def _tokens(self, img: torch.Tensor, mask: torch.Tensor | None):
        B, _, H, W = img.shape
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"image {H}x{W} is not divisible by patch_size {self.patch_size}")
        grid = (H // self.patch_size, W // self.patch_size)
        x = self.patch_embed(img).flatten(2).transpose(1, 2)  # (B, N, C)
        if mask is not None:
            if self.mask_token is None:
                raise ValueError("a mask was given but the model was built with use_mask_token=False")
            if mask.numel() != B * grid[0] * grid[1]:
                raise ValueError(f"mask {tuple(mask.shape)} does not match the {grid} token grid (batch {B})")
            x = blend_mask_token(x, self.mask_token, mask.reshape(B, -1, 1))
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.to(x.dtype).expand(B, -1, -1), x], dim=1)
        if self.pos_embed_type == "abs":
            x = x + resize_abs_pos_embed(self.pos_embed, self.grid, grid, self.cls_token is not None)
        elif self.pos_embed_type == "sincos":
            pe = self.pos_embed if grid == self.grid else sincos_2d(self.embed_dim, grid, x.device)[None]
            if self.cls_token is not None:
                pe = F.pad(pe, (0, 0, 1, 0))  # the cls token gets no position (MAE)
            x = x + pe.to(x.dtype)
        bias = self.rel_pos_bias(grid) if self.rel_pos_bias is not None else None
        return x, grid, bias

    def _to_map(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        if self.cls_token is not None:
            x = x[:, 1:]
        return x.transpose(1, 2).reshape(x.shape[0], -1, *grid)

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, in_chans, H, W) [+ (B, H/p, W/p) mask, 1 = masked] -> (B, num_features, H/p, W/p)."""
        x, grid, bias = self._tokens(x, mask)
        for blk in self.blocks:
            x = blk(x, grid, bias)
        return self._to_map(self.norm(x), grid)

    def forward_intermediates(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Each block's raw output (before the final norm) as a (B, C, H/p, W/p) map, one per block."""
        x, grid, bias = self._tokens(x, mask)
        out = []
        for blk in self.blocks:
            x = blk(x, grid, bias)
            out.append(self._to_map(x, grid))
        return out

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_features(x, mask)

    # ---- optimisation helpers ------------------------------------------------------------------
    def layer_id(self, name: str) -> int:
        """BEiT/SimMIM layer decay ids: embeddings 0, block i -> i + 1, everything else num_layers - 1."""
        if name.startswith(("cls_token", "mask_token", "pos_embed", "patch_embed")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.num_layers - 1

    def finetune_geometry(self) -> dict:
        """Nothing to carry over: position tables are resized when a checkpoint loads (``_load_from_state_dict``)."""
        return {}

    def no_weight_decay(self) -> set[str]:
        """Names exempt from weight decay beyond the engine's rule for 1-D parameters and biases
        (``engine/params.py``): position embeddings and tables, the class and mask tokens."""
        fixed = {"pos_embed", "cls_token", "mask_token"}
        return {n for n, _ in self.named_parameters() if n in fixed or n.endswith(_REL_TABLE)}

    # ---- checkpoints at another resolution -----------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Adapt a checkpoint before loading: resize abs embeddings and relative tables built for another
        grid (assumed square), and expand a shared relative table into per-block tables (SimMIM's ViT
        fine-tuning recipe: pre-train shared, fine-tune per block)."""
        cls = self.cls_token is not None
        key = prefix + "pos_embed"
        if isinstance(self.pos_embed, nn.Parameter) and key in state_dict:
            pe = state_dict[key]
            if pe.shape != self.pos_embed.shape:
                old = _square_grid(pe.shape[1] - int(cls), "pos_embed")
                state_dict[key] = resize_abs_pos_embed(pe, old, self.grid, cls)
        shared_key = prefix + "rel_pos_bias." + _REL_TABLE
        shared = state_dict.get(shared_key)
        for name, p in self.named_parameters():
            if not name.endswith(_REL_TABLE):
                continue
            k = prefix + name
            if k not in state_dict and shared is not None and self.rel_pos_bias is None:
                state_dict[k] = shared.clone()
            if k in state_dict and state_dict[k].shape != p.shape:
                n_old, n_new = state_dict[k].shape[0] - 3 * cls, p.shape[0] - 3 * cls
                old = (_square_grid(n_old, _REL_TABLE)[0] + 1) // 2
                new = self.grid if n_new == (2 * self.grid[0] - 1) * (2 * self.grid[1] - 1) else None
                if new is None:
                    raise ValueError(f"{k}: model table has {p.shape[0]} rows, not built for grid {self.grid}")
                state_dict[k] = resize_rel_table(state_dict[k], (old, old), new, cls)
        if shared is not None and self.rel_pos_bias is None:
            del state_dict[shared_key]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


MODEL_CLASS = VisionTransformer


# Paper-scale presets follow microsoft/SimMIM's ViT pre-training config (vit_base__800ep): patch 16 at
# 224, cls token, one relative position bias table shared by all blocks (USE_SHARED_RPB; no absolute
# embedding), layer scale 0.1, drop path 0.1. Fine-tuning per SimMIM: build with rel_pos_shared=False
# and load the checkpoint; the shared table is copied into every block. Tiny/small/large only scale
# width/depth/heads (SimMIM released ViT-B only).
_SIMMIM_VIT = dict(img_size=224, patch_size=16, pos_embed="rel", rel_pos_shared=True, use_cls_token=True,
                   init_values=0.1, drop_path_rate=0.1)
# CPU presets (the demo study's feasibility runs): 32x32 images, patch 8 (16 tokens), fixed sin-cos
# position embedding, plain pre-norm blocks, no cls token; no stochastic depth at 2-6 blocks.
_CPU_VIT = dict(img_size=32, patch_size=8, pos_embed="sincos", drop_path_rate=0.0)

def check_kwargs(kw: dict) -> None:
    """Every constructor keyword (defaults filled in) by the project's checks: a one-line ConfigError instead of
    a traceback from deep inside the constructor, or a model that trains to "done" with no blocks."""
    positive("at least 1")("model depth", kw["depth"])
    positive("at least 1")("model num_heads", kw["num_heads"])
    positive()("model embed_dim", kw["embed_dim"])
    positive()("model patch_size", kw["patch_size"])
    positive()("model mlp_ratio", kw["mlp_ratio"])
    positive()("model layer_norm_eps", kw["layer_norm_eps"])
    between(0, 1, False, True)("model drop_path_rate", kw["drop_path_rate"])
    one_of(*POS_EMBEDS)("model pos_embed", kw["pos_embed"])
    size = kw["img_size"]
    sizes = list(size) if isinstance(size, (list, tuple)) else [size]
    each(positive(), "positive")("model img_size", sizes)
    if any(s % kw["patch_size"] for s in sizes):
        raise ConfigError(f"model img_size {pair(size)} is not divisible by patch_size {kw['patch_size']}")
    if kw["embed_dim"] % kw["num_heads"]:
        raise ConfigError(f"model embed_dim {kw['embed_dim']} is not a multiple of num_heads {kw['num_heads']}")
    if kw["pos_embed"] == "sincos" and kw["embed_dim"] % 4:
        raise ConfigError(f"model embed_dim {kw['embed_dim']} must be a multiple of 4 for pos_embed sincos")


PRESETS = {
    "vit-tiny": dict(embed_dim=192, depth=12, num_heads=3, **_SIMMIM_VIT),
    "vit-small": dict(embed_dim=384, depth=12, num_heads=6, **_SIMMIM_VIT),
    "vit-base": dict(embed_dim=768, depth=12, num_heads=12, **_SIMMIM_VIT),
    "vit-large": dict(embed_dim=1024, depth=24, num_heads=16, **_SIMMIM_VIT),
    "vit-cpu-s": dict(embed_dim=32, depth=2, num_heads=2, **_CPU_VIT),
    "vit-cpu-m": dict(embed_dim=64, depth=4, num_heads=4, **_CPU_VIT),
    "vit-cpu-l": dict(embed_dim=128, depth=6, num_heads=4, **_CPU_VIT),
}
