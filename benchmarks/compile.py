"""torch.compile (inductor) vs eager for our SimMIM Swin V2 train step on CPU; compile time excluded.

Model: SwinV2 C=48 (``--embed-dim``), depths 2,2,6,2, heads 3,6,12,24, window 12, 192 px, batch 8, fp32, AdamW
(``mimscale.train.step.train_step``, as ``train.compile: true`` does: the SimMIM module is compiled, the
optimizer step stays eager). Both models start from the same weights; timed rounds alternate.

    .venv/bin/python benchmarks/compile.py --threads 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from _common import alternating_rates, masked_batch, swin192

from mimscale.models import build_model
from mimscale.objectives.simmim import SimMIM
from mimscale.train.optim import pretrain_optimizer
from mimscale.train.step import train_step


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--embed-dim", type=int, default=48)
    ap.add_argument("--preset", default="", help="instead: a registry preset at its own image size (mask unit = "
                    "its stride), e.g. swinv2-cpu-l with --batch 64")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--mode", default=None, help="torch.compile mode (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    torch.manual_seed(0)
    enc = build_model(args.preset) if args.preset else swin192(args.embed_dim)
    size = enc.img_size if isinstance(enc.img_size, int) else enc.img_size[0]
    unit = enc.stride if args.preset else 32  # a preset's mask unit is one output token, as in the demo
    eager = SimMIM(enc).train()
    base = SimMIM(copy.deepcopy(enc)).train()
    base.load_state_dict(eager.state_dict())
    compiled = torch.compile(base, mode=args.mode)
    img, mask = masked_batch(args.batch, size, enc.patch_size, unit)
    runs = {"eager": (eager, pretrain_optimizer(eager, 1e-4, 0.05, (0.9, 0.999), 1e-8)),
            "compiled": (compiled, pretrain_optimizer(base, 1e-4, 0.05, (0.9, 0.999), 1e-8))}

    def step(key: str) -> float:
        model, opt = runs[key]
        return train_step(model, opt, [(img, mask)], 1e-4, 5.0, device, "fp32").loss

    t0 = time.perf_counter()
    first = step("compiled")
    step("compiled")
    t_compile = time.perf_counter() - t0
    print(f"compile + 2 steps: {t_compile:.1f} s; first-step loss compiled {first:.5f} eager {step('eager'):.5f}")
    step("eager")
    rates = alternating_rates({k: (lambda k=k: step(k)) for k in runs}, args.rounds, args.iters, args.batch)
    med = {k: statistics.median(v) for k, v in rates.items()}
    what = args.preset or f"SwinV2 C={args.embed_dim} 2,2,6,2 w12"
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {what} {size} px, "
          f"batch {args.batch}, fp32, median of {args.rounds} rounds x {args.iters} steps")
    for k, v in rates.items():
        print(f"{k:<9} {med[k]:>7.2f} img/s   rounds {' '.join(f'{r:.2f}' for r in v)}")
    print(f"compiled/eager: {med['compiled'] / med['eager']:.2f}x")


if __name__ == "__main__":
    main()
