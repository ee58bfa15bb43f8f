"""Processes x threads for the CPU presets: why a study on a small machine runs one run per core.

For each preset and each (processes, threads) split of the machine, that many independent processes each
train the preset's SimMIM step (batch 64, fp32, AdamW, random 32 px images) with that many torch threads,
started together behind a barrier; the table reports the summed images/s. A study with ``--workers P`` and
``--threads T`` runs exactly this way (P runs at once, T threads each).

    .venv/bin/python benchmarks/parallel.py --presets vit-cpu-l,swinv2-cpu-l
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time


def _worker(preset: str, threads: int, batch: int, steps: int, barrier, results) -> None:
    import torch
    from _common import masked_batch

    from mimscale.models import build_model
    from mimscale.objectives.simmim import SimMIM
    from mimscale.train.optim import pretrain_optimizer
    from mimscale.train.step import train_step

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = SimMIM(build_model(preset)).train()
    opt = pretrain_optimizer(model, 1e-4, 0.05, (0.9, 0.999), 1e-8)
    size = model.encoder.img_size if isinstance(model.encoder.img_size, int) else model.encoder.img_size[0]
    img, mask = masked_batch(batch, size, model.encoder.patch_size, model.encoder.stride)
    device = torch.device("cpu")
    for _ in range(3):
        train_step(model, opt, [(img, mask)], 1e-4, 5.0, device, "fp32")
    barrier.wait()
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(model, opt, [(img, mask)], 1e-4, 5.0, device, "fp32")
    results.put(steps * batch / (time.perf_counter() - t0))


def measure(preset: str, procs: int, threads: int, batch: int, steps: int) -> float:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    ps = [ctx.Process(target=_worker, args=(preset, threads, batch, steps, barrier, results)) for _ in range(procs)]
    for p in ps:
        p.start()
    rates = [results.get() for _ in ps]
    for p in ps:
        p.join()
    return sum(rates)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="vit-cpu-s,vit-cpu-l,swinv2-cpu-s,swinv2-cpu-l")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args(argv)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    splits = [(1, 1)] + [(p, cpus // p) for p in (1, cpus) if (p, cpus // p) != (1, 1)]
    print(f"{cpus} CPUs, batch {args.batch}, {args.steps} timed steps per process, fp32, AdamW; summed img/s")
    print(f"{'preset':<14} " + " ".join(f"{f'{p} proc x {t} thr':>16}" for p, t in splits) + "   best split")
    for preset in args.presets.split(","):
        rates = {s: measure(preset.strip(), *s, args.batch, args.steps) for s in splits}
        best = max(rates, key=rates.get)
        print(f"{preset:<14} " + " ".join(f"{rates[s]:>16.0f}" for s in splits)
              + f"   {best[0]} x {best[1]} ({rates[best] / rates[(1, 1)]:.2f}x one core)", flush=True)


if __name__ == "__main__":
    main()
