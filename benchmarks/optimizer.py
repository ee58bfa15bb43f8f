"""AdamW update time: fused kernel vs foreach vs the per-parameter loop, on a model's real parameter set.

Gradients are random; only ``optimizer.step()`` is timed (best of two passes of ``--steps`` updates each).

    .venv/bin/python benchmarks/optimizer.py --models vit-cpu-s,vit-cpu-l,swinv2-cpu-l --threads 1
    .venv/bin/python benchmarks/optimizer.py --models c96 --threads 2      # the issue-9 C=96 Swin V2
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import swin192

from mimscale.models import build_model
from mimscale.objectives.simmim import SimMIM
from mimscale.train.optim import param_groups

KINDS = {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="vit-cpu-s,vit-cpu-l,swinv2-cpu-l", help="presets, or c48 / c96")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"threads {torch.get_num_threads()}, ms per AdamW update (best of 2 x {args.steps})")
    print(f"{'model':<14} {'params':>8} {'tensors':>7} " + " ".join(f"{k:>8}" for k in KINDS) + "  foreach/fused")
    for name in args.models.split(","):
        enc = swin192(int(name[1:])) if name in ("c48", "c96") else build_model(name)
        model = SimMIM(enc)
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        ms = {}
        for kind, kw in KINDS.items():
            opt = torch.optim.AdamW(param_groups(model, 0.05, enc.no_weight_decay()), lr=1e-4, **kw)
            for _ in range(3):
                opt.step()
            best = float("inf")
            for _ in range(2):
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    opt.step()
                best = min(best, (time.perf_counter() - t0) / args.steps * 1e3)
            ms[kind] = best
        n = sum(p.numel() for p in model.parameters())
        print(f"{name:<14} {n / 1e6:>7.2f}M {len(list(model.parameters())):>7} "
              + " ".join(f"{ms[k]:>8.2f}" for k in KINDS) + f"  {ms['foreach'] / ms['fused']:>12.1f}x", flush=True)


if __name__ == "__main__":
    main()
