"""SimMIM train-step throughput: mimscale's SwinV2 vs transformers' Swinv2ForMaskedImageModeling.

Both models get the identical configuration and weights (ours is built from theirs), the same SimMIM
head (Conv1x1 -> PixelShuffle decoder, L1 loss on masked pixels), AdamW, fp32, in one process.
After a warmup, timed rounds alternate ours / theirs so that machine noise (thermal, other processes)
hits both equally; the table reports the median images/s over rounds.

    .venv/bin/python benchmarks/train_step.py --configs cpu,small --threads 2
    .venv/bin/python benchmarks/train_step.py --configs swinv2-s --iters 3 --rounds 3
    # on a GPU (issue 9): swinv2-b at 192 px, bf16 autocast, with MFU against a measured bf16 matmul peak
    .venv/bin/python benchmarks/train_step.py --configs swinv2-b --device cuda --precision bf16 --mfu
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mimscale.masking import MaskGenerator, upsample_mask
from mimscale.models.hf import swinv2_from_transformers

# Wall clock by default; ``--clock cpu`` counts this process's CPU seconds instead, which on a shared
# machine with ``--threads 1`` approximates the uncontended speed (other processes' time is not counted).
_clock = time.perf_counter
# Median over rounds by default; ``--stat best`` (fastest round) resists interference from other processes.
_STAT = statistics.median

# name -> (Swinv2Config keywords, batch size, SimMIM mask unit in pixels)
CONFIGS = {
    # a 32 px, patch-2, three-stage Swin V2 (256 tokens at stage 1; heavier than the CPU presets)
    "cpu": (dict(image_size=32, patch_size=2, embed_dim=32, depths=[2, 2, 4], num_heads=[1, 2, 4],
                 window_size=4), 64, 8),
    "small": (dict(image_size=192, patch_size=4, embed_dim=48, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                   window_size=12), 8, 32),
    # the issue-9 configurations: C=48 / C=96, depths 2,2,6,2, window 12, 192 px, batch 8 and 32
    "small-b32": (dict(image_size=192, patch_size=4, embed_dim=48, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                       window_size=12), 32, 32),
    "c96": (dict(image_size=192, patch_size=4, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                 window_size=12), 8, 32),
    "c96-b32": (dict(image_size=192, patch_size=4, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                     window_size=12), 32, 32),
    # the CPU presets swinv2-cpu-m / -l (32 px, patch 4, window 4, two stages), at the demo's batch
    "cpu-m": (dict(image_size=32, patch_size=4, embed_dim=32, depths=[2, 4], num_heads=[2, 4], window_size=4), 64, 8),
    "cpu-l": (dict(image_size=32, patch_size=4, embed_dim=64, depths=[2, 4], num_heads=[2, 4], window_size=4), 64, 8),
    "swinv2-s": (dict(image_size=192, patch_size=4, embed_dim=96, depths=[2, 2, 18, 2],
                      num_heads=[3, 6, 12, 24], window_size=12), 8, 32),
    # the paper's SwinV2-B; the batch is a GPU's (override with --batch)
    "swinv2-b": (dict(image_size=192, patch_size=4, embed_dim=128, depths=[2, 2, 18, 2],
                      num_heads=[4, 8, 16, 32], window_size=12), 128, 32),
}


class OursSimMIM(nn.Module):
    """Our encoder with the same decoder and loss as transformers' Swinv2ForMaskedImageModeling."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pred = self.decoder(self.encoder.forward_features(img, mask))
        m = upsample_mask(mask, self.encoder.patch_size).to(pred.dtype)
        return (F.l1_loss(img, pred, reduction="none") * m).sum() / (m.sum() + 1e-5) / img.shape[1]


def build_pair(kwargs: dict, drop_path_rate: float):
    from transformers import Swinv2Config, Swinv2ForMaskedImageModeling

    stride = kwargs["patch_size"] * 2 ** (len(kwargs["depths"]) - 1)
    cfg = Swinv2Config(**kwargs, encoder_stride=stride, drop_path_rate=drop_path_rate)
    theirs = Swinv2ForMaskedImageModeling(cfg)
    # Same decoder weights on both sides, so both start from the identical network.
    ours = OursSimMIM(swinv2_from_transformers(theirs), copy.deepcopy(theirs.decoder))
    return ours, theirs


def make_step(model: nn.Module, is_hf: bool, precision: str = "fp32"):
    # Fused AdamW on both sides: mimscale's optimizer and the transformers Trainer's default for torch >= 2.8,
    # so the ratio compares the models, not optimizer implementations.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, fused=True)

    device_type = next(model.parameters()).device.type

    def step(img: torch.Tensor, mask: torch.Tensor) -> float:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            if is_hf:
                loss = model(pixel_values=img, bool_masked_pos=mask.flatten(1).bool()).loss
            else:
                loss = model(img, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()  # also waits for an accelerator to finish the step

    return step


def flops_per_image(model: nn.Module, img: torch.Tensor, mask: torch.Tensor) -> float:
    """Forward + backward FLOPs of one image (torch.utils.flop_counter); the same for both models."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model(img[:1], mask[:1]).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def bench(name: str, iters: int, rounds: int, warmup: int, drop_path_rate: float, seed: int = 0,
          device: torch.device | None = None, precision: str = "fp32", batch: int = 0) -> dict:
    device = device or torch.device("cpu")
    kwargs, default_batch, unit = CONFIGS[name]
    batch = batch or default_batch
    torch.manual_seed(seed)
    ours, theirs = build_pair(kwargs, drop_path_rate)
    ours.to(device).train()
    theirs.to(device).train()
    img = torch.randn(batch, 3, kwargs["image_size"], kwargs["image_size"], device=device)
    gen = MaskGenerator(kwargs["image_size"], unit, kwargs["patch_size"], 0.6)
    rng = np.random.default_rng(seed)
    mask = torch.from_numpy(np.stack([gen(rng) for _ in range(batch)])).float().to(device)
    flops = flops_per_image(ours, img, mask)
    steps = {"ours": make_step(ours, False, precision), "transformers": make_step(theirs, True, precision)}
    for step in steps.values():
        for _ in range(warmup):
            step(img, mask)
    rates = {k: [] for k in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            t0 = _clock()
            for _ in range(iters):
                step(img, mask)
            rates[key].append(iters * batch / (_clock() - t0))
    n_params = sum(p.numel() for p in ours.encoder.parameters())
    return {"config": name, "batch": batch, "params_M": n_params / 1e6, "flops_per_image": flops,
            **{k: _STAT(v) for k, v in rates.items()}}


def bench_preset(name: str, batch: int, iters: int, rounds: int, warmup: int, seed: int = 0) -> dict:
    """Our SimMIM step alone on a registry preset (used to fill the CPU preset table in swinv2.py)."""
    from mimscale.models.swinv2 import PRESETS, SwinV2

    torch.manual_seed(seed)
    enc = SwinV2(**PRESETS[name])
    dec = nn.Sequential(nn.Conv2d(enc.num_features, enc.stride**2 * 3, 1), nn.PixelShuffle(enc.stride))
    model = OursSimMIM(enc, dec).train()
    img = torch.randn(batch, 3, enc.img_size, enc.img_size)
    unit = enc.stride  # the demo's mask unit: one output token
    gen = MaskGenerator(enc.img_size, unit, enc.patch_size, 0.6)
    rng = np.random.default_rng(seed)
    mask = torch.from_numpy(np.stack([gen(rng) for _ in range(batch)])).float()
    step = make_step(model, False)
    for _ in range(warmup):
        step(img, mask)
    rates = []
    for _ in range(rounds):
        t0 = _clock()
        for _ in range(iters):
            step(img, mask)
        rates.append(iters * batch / (_clock() - t0))
    return {"params_M": sum(p.numel() for p in enc.parameters()) / 1e6, "img_s": _STAT(rates)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="cpu,small", help=f"comma-separated subset of {', '.join(CONFIGS)}")
    ap.add_argument("--iters", type=int, default=5, help="train steps per timed round")
    ap.add_argument("--rounds", type=int, default=5, help="alternating ours/theirs rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per model before timing")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--drop-path", type=float, default=0.1, help="stochastic depth rate, both models")
    ap.add_argument("--presets", default="", help="instead: time our SimMIM step alone on these presets")
    ap.add_argument("--batch", type=int, default=64, help="batch size for --presets")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: elapsed time; cpu: this process's CPU time (for shared machines, 1 thread)")
    ap.add_argument("--stat", choices=["median", "best"], default="median", help="summary over rounds")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast, both models")
    ap.add_argument("--config-batch", type=int, default=0, help="override the configs' batch size")
    ap.add_argument("--mfu", action="store_true",
                    help="also MFU: FLOP/s against a measured matmul peak in the step's precision")
    args = ap.parse_args(argv)
    global _clock, _STAT
    _clock = time.process_time if args.clock == "cpu" else time.perf_counter
    _STAT = max if args.stat == "best" else statistics.median
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.presets:
        print(f"threads {torch.get_num_threads()}, {args.clock} clock, batch {args.batch}, fp32, AdamW")
        for name in args.presets.split(","):
            r = bench_preset(name, args.batch, args.iters, args.rounds, args.warmup)
            print(f"{name:<14} {r['params_M']:>7.3f}M {r['img_s']:>8.1f} img/s", flush=True)
        return
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown config(s) {unknown}; valid: {', '.join(CONFIGS)}")
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"threads {torch.get_num_threads()}"
    print(f"torch {torch.__version__}, {where}, {args.clock} clock, {args.stat} of rounds, {args.precision}, "
          f"AdamW, {args.rounds} rounds x {args.iters} iters")
    peak = 0.0
    if args.mfu:
        from mimscale.bench import matmul_peak

        peak = matmul_peak(device, torch.bfloat16 if args.precision == "bf16" else torch.float32)
        print(f"matmul peak ({args.precision}, 2048^2): {peak / 1e12:.2f} TFLOP/s")
    print(f"{'config':<10} {'batch':>5} {'params':>8} {'ours img/s':>11} {'HF img/s':>10} {'ours/HF':>8}"
          + (f" {'GFLOP/img':>9} {'ours MFU':>8} {'HF MFU':>7}" if peak else ""))
    for name in names:
        r = bench(name, args.iters, args.rounds, args.warmup, args.drop_path, device=device,
                  precision=args.precision, batch=args.config_batch)
        mfu = (f" {r['flops_per_image'] / 1e9:>9.2f} {100 * r['ours'] * r['flops_per_image'] / peak:>7.1f}% "
               f"{100 * r['transformers'] * r['flops_per_image'] / peak:>6.1f}%") if peak else ""
        print(f"{r['config']:<10} {r['batch']:>5} {r['params_M']:>7.2f}M {r['ours']:>11.1f} "
              f"{r['transformers']:>10.1f} {r['ours'] / r['transformers']:>8.2f}" + mfu, flush=True)


if __name__ == "__main__":
    main()
