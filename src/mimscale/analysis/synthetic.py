"""Synthetic results tables with planted findings, for tests and `benchmarks/analysis.py`.

`paper_grid` is shaped like the published grid of a large MIM data-scaling study: 5 Swin V2 sizes;
10/20/50/100% of a 1.28M-image dataset plus a second, 11x larger one; 125K/250K/500K iterations; one
fine-tuned top-1 per run; unbalanced (the largest model lacks the 10% and 20% subsets, the second
largest the 10% subset, the smallest model the larger dataset): 63 runs per seed. Every held-out loss is
on the smaller dataset's validation set, so the larger dataset's losses sit above the full smaller one's.

The loss is E + A*(N/1e8)^-alpha + B(N)*(D/1e6)^-beta plus a length effect: each doubling of the
length lowers it by 0.004 and, with `overfit`, raises it by 0.0022*(N/1e8)^0.5*(256,233/D), so on small
data larger models end up rising (by 0.002 to 0.004 over the shortest) with longer training. With `gain_grows`, B grows with
N (more data helps larger models more on the sizes every model has) and shrinks with N otherwise.
Top-1 falls with the loss (slope `top1_slope`) and rises with model size; `weak_model` gets a noisier
top-1 (its correlation with the loss is the weakest).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SWIN = {"swinv2-S": 49.0e6, "swinv2-B": 87.0e6, "swinv2-L": 195.0e6, "swinv2-H": 655.0e6, "swinv2-g": 1.06e9}
SMALL_SET, LARGE_SET = "in1k", "in22k"
FULL = 1_281_167
FRACTIONS = (0.1, 0.2, 0.5, 1.0)
LARGE_SIZE = 14_197_122
LENGTHS = (125_000, 250_000, 500_000)
# (model, dataset, fraction) settings the published grid did not run
MISSING = {("swinv2-g", SMALL_SET, 0.1), ("swinv2-g", SMALL_SET, 0.2), ("swinv2-H", SMALL_SET, 0.1),
           ("swinv2-S", LARGE_SET, 1.0)}


def grid_loss(n, d, iters, *, overfit: bool = True, gain_grows: bool = True, large_set: bool = False):
    """Noise-free held-out loss of a run (see the module docstring)."""
    x = n / 1e8
    b = 0.02 * x ** (0.15 if gain_grows else -0.15)
    base_d = FULL if large_set else d
    loss = 0.38 + 0.03 * x**-0.3 + b * (base_d / 1e6) ** -0.5
    if large_set:
        loss += 0.004  # another distribution: its runs sit above the full smaller set's on that set's val
    doublings = np.log2(iters / LENGTHS[0])
    slope = -0.004 + (0.0022 * x**0.5 * 256_233 / d if overfit else 0.0)
    return loss + slope * doublings


def paper_grid(*, seeds: int = 1, noise: float = 0.0, seed_sd: float = 0.0004, overfit: bool = True,
               gain_grows: bool = True, top1_noise: float = 0.0005, top1_slope: float = 0.6,
               weak_model: str | None = None, seed: int = 0) -> pd.DataFrame:
    """The 63-run grid (x `seeds`): run, model, params, dataset, data_size, data_fraction, iters, seed,
    val_loss, eval_finetune_top1."""
    rng = np.random.default_rng(seed)
    rows = []
    for model, n in SWIN.items():
        for dataset, fractions in ((SMALL_SET, FRACTIONS), (LARGE_SET, (1.0,))):
            for frac in fractions:
                if (model, dataset, frac) in MISSING:
                    continue
                d = LARGE_SIZE if dataset == LARGE_SET else int(round(frac * FULL))
                for it in LENGTHS:
                    true = grid_loss(n, d, it, overfit=overfit, gain_grows=gain_grows,
                                     large_set=dataset == LARGE_SET)
                    for s in range(seeds):
                        v = true + rng.normal(0, noise) + (rng.normal(0, seed_sd) if seeds > 1 else 0.0)
                        sd = 0.01 if model == weak_model else top1_noise
                        top1 = 0.95 - top1_slope * v + 0.01 * np.log10(n / 1e8) + rng.normal(0, sd)
                        rows.append({"run": f"{model}-{dataset}-{frac:g}-{it // 1000}k-s{s}", "model": model,
                                     "params": n, "dataset": dataset, "data_size": d, "data_fraction": frac,
                                     "iters": it, "seed": s, "val_loss": float(v),
                                     "eval_finetune_top1": float(top1)})
    return pd.DataFrame(rows)


def large_grid(n_models: int = 10, n_sizes: int = 10, n_lengths: int = 5, seeds: int = 2, seed: int = 0,
               noise: float = 0.0005) -> pd.DataFrame:
    """A balanced grid of n_models x n_sizes x n_lengths x seeds runs (1,000 by default), one dataset."""
    rng = np.random.default_rng(seed)
    params = np.geomspace(2e7, 2e9, n_models)
    sizes = np.round(np.geomspace(1e5, 1.4e7, n_sizes))
    lengths = [int(125_000 * 2**k) for k in range(n_lengths)]
    rows = []
    for i, n in enumerate(params):
        for d in sizes:
            for it in lengths:
                true = grid_loss(n, d, min(it, LENGTHS[-1]))
                for s in range(seeds):
                    v = true + rng.normal(0, noise)
                    rows.append({"model": f"m{i:02d}", "params": n, "data_size": d, "iters": it, "seed": s,
                                 "val_loss": float(v),
                                 "eval_finetune_top1": float(0.95 - 0.6 * v + rng.normal(0, 0.0005))})
    return pd.DataFrame(rows)
