"""What ``mimscale bench`` measures: this machine's numbers for one preset: SimMIM train-step images/s, achieved
FLOP/s and MFU against a measured matmul peak, loader images/s, and peak memory of a training step."""

from __future__ import annotations

import resource
import time

import torch


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
    from mimscale.train.optim import pretrain_optimizer
    from mimscale.train.step import train_step

    encoder = build_model(model_name, img_size=img_size)
    model = SimMIM(encoder).to(device)
    opt = pretrain_optimizer(model, 1e-4, 0.05, (0.9, 0.999), 1e-8)
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


def bench(model: str, batch: int, img_size: int, steps: int, precision: str, device: str = "auto",
          threads: int = 0, workers: int = 0) -> dict:
    """Every number of ``mimscale bench`` for one preset (``img_size`` 0: the preset's own size)."""
    from mimscale.engine.distributed import resolve_device
    from mimscale.models.registry import checked_kwargs

    # the model at this size is checked before anything is measured (an --img-size that is not a multiple of
    # the patch size is one line, not a traceback after the matmul peak)
    _, kwargs = checked_kwargs(model, **({"img_size": img_size} if img_size else {}))
    if threads > 0:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    size = img_size or kwargs.get("img_size", 224)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    peak = matmul_peak(dev, dtype)
    train = train_throughput(model, batch, size, steps, precision, dev)
    loader = loader_throughput(size, batch, workers, 20)
    return {**train, "img_size": size, "device": str(dev), "threads": torch.get_num_threads(),
            "matmul_peak_flops": peak, "mfu": train["flops_per_s"] / peak, "loader_images_per_s": loader,
            "loader_workers": workers, "loader_vs_train": loader / train["images_per_s"]}
