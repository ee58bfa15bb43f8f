"""MFU of our SimMIM Swin V2 train step on this machine, fp32 and bf16 autocast.

Model: SwinV2 C=96 (default; ``--embed-dim``), depths 2,2,6,2, heads 3,6,12,24, window 12, 192 px, patch 4,
SimMIM 1x1-conv + PixelShuffle decoder, AdamW, batch 8. FLOPs/image (forward + backward) come from
torch.utils.flop_counter (``mimscale.train.flops.flops_per_image``); the peaks are a 2048^2 matmul in the same
dtype (``mimscale.bench.matmul_peak``). Timed rounds alternate fp32 / bf16 so machine noise hits both.

    .venv/bin/python benchmarks/mfu.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _common import alternating_rates, masked_batch, swin192

from mimscale.bench import matmul_peak
from mimscale.objectives.simmim import SimMIM
from mimscale.train.flops import flops_per_image
from mimscale.train.optim import pretrain_optimizer
from mimscale.train.step import train_step


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--embed-dim", type=int, default=96)
    ap.add_argument("--img-size", type=int, default=192)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3, help="train steps per timed round")
    ap.add_argument("--rounds", type=int, default=4, help="alternating fp32/bf16 rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precisions", default="fp32,bf16")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    torch.manual_seed(0)
    enc = swin192(args.embed_dim, args.img_size)
    model = SimMIM(enc).train()
    opt = pretrain_optimizer(model, 1e-4, 0.05, (0.9, 0.999), 1e-8)
    img, mask = masked_batch(args.batch, args.img_size, enc.patch_size)
    flops = flops_per_image(model, (img, mask), device)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {p: matmul_peak(device, dtypes[p], seconds=2.0) for p in precisions}

    def step(prec: str) -> None:
        train_step(model, opt, [(img, mask)], 1e-4, 5.0, device, prec)

    for p in precisions:
        for _ in range(args.warmup):
            step(p)
    rates = alternating_rates({p: (lambda p=p: step(p)) for p in precisions}, args.rounds, args.iters, args.batch)
    n_params = sum(q.numel() for q in enc.parameters())
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, SwinV2 C={args.embed_dim} depths 2,2,6,2 "
          f"window 12, {args.img_size} px, batch {args.batch}, {n_params / 1e6:.2f}M params, AdamW, "
          f"median of {args.rounds} rounds x {args.iters} steps")
    print(f"model FLOPs/image (fwd+bwd, flop_counter): {flops / 1e9:.2f} GFLOP")
    print(f"{'precision':<9} {'img/s':>7} {'GFLOP/s':>8} {'peak GFLOP/s':>13} {'MFU':>6}  rounds img/s")
    res = {}
    for p in precisions:
        ips = statistics.median(rates[p])
        res[p] = ips
        print(f"{p:<9} {ips:>7.2f} {ips * flops / 1e9:>8.1f} {peaks[p] / 1e9:>13.1f} "
              f"{100 * ips * flops / peaks[p]:>5.1f}%  {' '.join(f'{r:.2f}' for r in rates[p])}")
    if "fp32" in res and "bf16" in res:
        print(f"bf16/fp32 train-step ratio: {res['bf16'] / res['fp32']:.2f}x; "
              f"matmul peak ratio: {peaks['bf16'] / peaks['fp32']:.2f}x")


if __name__ == "__main__":
    main()
