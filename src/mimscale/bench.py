"""``mimscale bench``: this machine's numbers for one preset: SimMIM train-step images/s, achieved
FLOP/s and MFU against a measured matmul peak, loader images/s, and peak memory of a training step."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch

from mimscale.config import DataConfig


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, seconds: float = 1.0) -> float:
    """Achieved FLOP/s of a large square matmul: the practical peak MFU is measured against."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    _sync(device)
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        count += 1
    _sync(device)
    return 2 * n**3 * count / (time.perf_counter() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def train_throughput(model_name: str, batch: int, img_size: int, steps: int, precision: str,
                     device: torch.device) -> dict:
    import numpy as np

    from mimscale.masking import MaskGenerator
    from mimscale.models import build_model
    from mimscale.objectives.simmim import SimMIM
    from mimscale.train.flops import flops_per_image
    from mimscale.train.optim import build_optimizer
    from mimscale.train.step import train_step

    encoder = build_model(model_name, img_size=img_size)
    model = SimMIM(encoder).to(device)
    opt = build_optimizer(model, 1e-4, 0.05, (0.9, 0.999), 1e-8)
    # about 6 mask units per side, as SimMIM at 192 px (32 px units), rounded to the encoder stride
    unit = img_size // 6 // encoder.stride * encoder.stride or encoder.stride
    masks = MaskGenerator(img_size, unit, encoder.patch_size, 0.6)
    rng = np.random.default_rng(0)
    img = torch.randn(batch, 3, img_size, img_size)
    mask = torch.stack([torch.from_numpy(masks(rng)) for _ in range(batch)])
    flops = flops_per_image(model, (img, mask), device)
    mem0 = _peak_memory_mb(device)
    for _ in range(2):  # warm-up: allocator, autotuning
        train_step(model, opt, [(img, mask)], 1e-4, 5.0, device, precision)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(model, opt, [(img, mask)], 1e-4, 5.0, device, precision)
    _sync(device)
    dt = time.perf_counter() - t0
    ips = batch * steps / dt
    return {"model": model_name, "params": sum(p.numel() for p in encoder.parameters()), "batch": batch,
            "img_size": img_size, "precision": precision, "images_per_s": ips,
            "flops_per_image": flops, "flops_per_s": flops * ips,
            "peak_memory_mb": _peak_memory_mb(device), "memory_before_mb": mem0}


def loader_throughput(img_size: int, batch: int, workers: int, batches: int) -> float:
    from mimscale import data as D
    from mimscale.masking import MaskGenerator

    plan = D.plan_data(f"shapes:size={img_size},pool=2000,seed=0", fraction=1.0, seed=0)
    unit = 8 if img_size % 8 == 0 else img_size
    ds = D.SimMIMDataset(plan.source, plan.train_indices, D.TrainTransform(img_size),
                         MaskGenerator(img_size, unit, min(4, unit), 0.6), seed=0)
    loader = D.build_pretrain_loader(ds, D.ResumableSampler(len(ds), 0, batch), num_workers=workers)
    next(loader)  # start-up (worker spawn) is not throughput
    t0 = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batch * batches / (time.perf_counter() - t0)


def bench_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mimscale bench", description=__doc__)
    p.add_argument("--model", default="swinv2-cpu-m", help="model preset (mimscale.models.list_models())")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--img-size", type=int, default=0, help="0: the preset's own size")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--workers", type=int, default=DataConfig.num_workers,
                   help=f"loader worker processes (default {DataConfig.num_workers}, as data.num_workers: in process)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = p.parse_args(argv)
    from mimscale.models import model_kwargs
    from mimscale.train.distributed import resolve_device

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    _, kwargs = model_kwargs(a.model)
    size = a.img_size or kwargs.get("img_size", 224)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[a.precision]
    peak = matmul_peak(device, dtype)
    train = train_throughput(a.model, a.batch, size, a.steps, a.precision, device)
    loader = loader_throughput(size, a.batch, a.workers, 20)
    out = {**train, "device": str(device), "threads": torch.get_num_threads(), "matmul_peak_flops": peak,
           "mfu": train["flops_per_s"] / peak, "loader_images_per_s": loader, "loader_workers": a.workers,
           "loader_vs_train": loader / train["images_per_s"]}
    if a.json:
        print(json.dumps(out))
        return 0
    rows = [("model", f"{a.model} ({out['params'] / 1e6:.2f}M params, {size} px, batch {a.batch}, {a.precision})"),
            ("device", f"{out['device']}, {out['threads']} threads"),
            ("train images/s", f"{out['images_per_s']:.1f}"),
            ("model FLOPs/image", f"{out['flops_per_image'] / 1e9:.3f} GFLOP (forward + backward)"),
            ("achieved", f"{out['flops_per_s'] / 1e9:.1f} GFLOP/s"),
            ("matmul peak", f"{peak / 1e9:.1f} GFLOP/s ({a.precision}, 2048^2)"),
            ("MFU", f"{100 * out['mfu']:.1f}%"),
            ("loader images/s", f"{loader:.0f} with {a.workers} workers ({out['loader_vs_train']:.1f}x training)"),
            ("peak memory", f"{out['peak_memory_mb']:.0f} MiB")]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    sys.stdout.flush()
    return 0
