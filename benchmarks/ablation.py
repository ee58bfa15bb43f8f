"""Each Swin V2 speed choice, measured: our train step as shipped vs the same step with one choice reverted.

The reverted variants are patched in here (the library keeps only the faster form), one at a time, on the
issue-9 model (depths 2,2,6,2, heads 3,6,12,24, window 12, 192 px, ``--embed-dim`` 48 or 96), fp32, SimMIM
loss + AdamW via ``mimscale.train.step.train_step``. Rounds alternate shipped / variant so machine noise hits
both; the table reports the median images/s and the variant's cost as shipped/variant (> 1: the choice helps).

    .venv/bin/python benchmarks/ablation.py --threads 2 --embed-dim 96
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _common import alternating_rates, masked_batch, swin192

from mimscale.models import swinv2
from mimscale.objectives.simmim import SimMIM
from mimscale.train.optim import pretrain_optimizer
from mimscale.train.step import train_step


def _bias_by_indexing(self) -> torch.Tensor:
    """Position bias gathered with ``table[index]`` (backward: accumulating index_put)."""
    table = 16 * torch.sigmoid(self.cpb_mlp(self.relative_coords_table))
    n = self.window * self.window
    return table[self.relative_position_index.view(-1)].view(n, n, self.num_heads).permute(2, 0, 1).contiguous()


def _bias_sigmoid_after_gather(self) -> torch.Tensor:
    """The reference's order: gather the raw MLP output to N^2 pairs, then the sigmoid on all of them."""
    n = self.window * self.window
    raw = F.embedding(self.relative_position_index.view(-1), self.cpb_mlp(self.relative_coords_table))
    return (16 * torch.sigmoid(raw)).view(n, n, self.num_heads).permute(2, 0, 1).contiguous()


def _sdpa_everywhere(q, k, v, bias):
    """PyTorch's fused scaled_dot_product_attention on CPU too."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)


def _patch_embed_conv(self, x):
    """The patch embedding as the strided Conv2d it is declared as, then to channels-last."""
    return self.norm(self.proj(x).permute(0, 2, 3, 1))


def _attention_partition_first(self, x, shift_mask=None):
    """The reference's data movement: partition the map into windows, project, split heads, attend, merge
    heads, project, reverse the partition (each step a copy), instead of folding them into two permutes."""
    B, H, W, C = x.shape
    h, w = self.num_heads, self.window
    win = swinv2.window_partition(x, w).reshape(-1, w * w, C)  # (B nW, N, C)
    bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
    q, k, v = F.linear(win, self.qkv.weight, bias).view(win.shape[0], w * w, 3, h, -1).permute(2, 0, 3, 1, 4)
    scale = torch.clamp(self.logit_scale, max=swinv2._LOGIT_SCALE_MAX).exp()
    attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1) * scale + self.position_bias()
    if shift_mask is not None:
        nW = shift_mask.shape[0]
        attn = (attn.view(B, nW, h, w * w, w * w) + shift_mask[None, :, None]).view(-1, h, w * w, w * w)
    out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(-1, w * w, C)
    out = self.proj(out).view(B, H // w, W // w, w, w, C).permute(0, 1, 3, 2, 4, 5)
    return out.reshape(B, H, W, C)


# name -> (what the library does instead, (object, attribute, replacement))
VARIANTS = {
    "bias: index": ("F.embedding gather (dense backward)", (swinv2.WindowAttention, "position_bias", _bias_by_indexing)),
    "bias: sigmoid late": ("sigmoid on the (2W-1)^2 table before the gather",
                           (swinv2.WindowAttention, "position_bias", _bias_sigmoid_after_gather)),
    "attn: SDPA on CPU": ("explicit matmul-softmax-matmul on CPU", (swinv2, "_attention", _sdpa_everywhere)),
    "windows: partition": ("partition folded into the q/k/v and output permutes",
                           (swinv2.WindowAttention, "forward", _attention_partition_first)),
    "embed: conv": ("patches as one matmul, channels-last", (swinv2.PatchEmbed, "forward", _patch_embed_conv)),
}


@contextlib.contextmanager
def patched(target):
    obj, attr, new = target
    old = getattr(obj, attr)
    setattr(obj, attr, new)
    try:
        yield
    finally:
        setattr(obj, attr, old)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--embed-dim", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=2, help="train steps per timed round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    torch.manual_seed(0)
    model = SimMIM(swin192(args.embed_dim)).train()
    opt = pretrain_optimizer(model, 1e-4, 0.05, (0.9, 0.999), 1e-8)
    img, mask = masked_batch(args.batch, 192, model.encoder.patch_size)

    def step() -> None:
        train_step(model, opt, [(img, mask)], 1e-4, 5.0, device, "fp32")

    def variant_step(target) -> Callable[[], None]:
        def run() -> None:
            with patched(target):
                step()
        return run

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, SwinV2 C={args.embed_dim} 2,2,6,2 w12 "
          f"192 px, batch {args.batch}, fp32, median of {args.rounds} rounds x {args.iters} steps")
    print(f"{'variant':<20} {'shipped img/s':>13} {'variant img/s':>13} {'shipped/variant':>15}  shipped choice")
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        choice, target = VARIANTS[name]
        steps = {"shipped": step, "variant": variant_step(target)}
        alternating_rates(steps, 1, args.iters, args.batch)  # warm-up (allocator, kernels) of both
        rates = alternating_rates(steps, args.rounds, args.iters, args.batch)
        a, b = statistics.median(rates["shipped"]), statistics.median(rates["variant"])
        print(f"{name:<20} {a:>13.2f} {b:>13.2f} {a / b:>14.2f}x  {choice}", flush=True)

if __name__ == "__main__":
    main()
