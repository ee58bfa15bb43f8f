"""Synthetic results tables with planted findings, for the analysis tests and `benchmarks/analysis.py`.

`paper_grid` is shaped like the published grid of a large MIM data-scaling study: 5 Swin V2 sizes;
10/20/50/100% of a 1.28M-image dataset plus a second, 11x larger one; 125K/250K/500K iterations; one
fine-tuned top-1 per run; unbalanced (the largest model lacks the 10% and 20% subsets, the second
largest the 10% subset, the smallest model the larger dataset): 63 runs per seed. Every held-out loss is
on the smaller dataset's validation set, so the larger dataset's losses sit above the full smaller one's.

The loss is E + A*(N/1e8)^-alpha + B(N)*(D/1e6)^-beta plus a length effect: each doubling of the length
lowers it by LENGTH_GAIN, and with `overfit` a setting on small data rises instead. The overfitting is
shaped like the published grid's: every model rises at the smallest fraction, the smaller models the most;
the rise shrinks with more data, more slowly for larger models, so the largest fraction at which a model
still rises (its onset) grows with model size (the largest model rises even at 50%); nothing rises on the
full data. Fine-tuning recovers the smaller models' rises (their top-1 does not fall with it) but not the
larger ones'. The planted-absent twins: `overfit=False` (no rise), "wrong_way" (the onset moves to less
data as models grow: small models rise at 50%, large ones only at the smallest size they have) and
"full" (the paper's shape plus a rise of every model on the full data).

With `gain_grows`, B grows with N (more data helps larger models more on the sizes every model has) and
shrinks with N otherwise. Top-1 falls with the loss (slope `top1_slope`) and rises with model size;
`weak_model` gets a noisier top-1 (its correlation with the loss is the weakest).
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
LENGTH_GAIN = 0.003
# Planted overfitting, per model: the rise (500K minus the best shorter length) at 10% of the data and the
# onset fraction where it reaches 0, linear in log2(fraction) in between (so the rise at 10% shrinks
# with size while the onset grows). "wrong_way" gives the onsets in the reverse order.
RISE_AT_10 = {"swinv2-S": 0.0048, "swinv2-B": 0.0044, "swinv2-L": 0.004, "swinv2-H": 0.0036, "swinv2-g": 0.0032}
ONSET = {"swinv2-S": 0.15, "swinv2-B": 0.25, "swinv2-L": 0.35, "swinv2-H": 0.75, "swinv2-g": 0.95}
# Fine-tuning recovers this share of the rise in top-1: the smaller models' top-1 does not fall with it.
RECOVERED = {"swinv2-S": 1.0, "swinv2-B": 1.0, "swinv2-L": 0.0, "swinv2-H": 0.0, "swinv2-g": 0.0}


def planted_rise(model: str, fraction: float, overfit) -> float:
    """The planted rise of the held-out loss at 500K over the best shorter length (<= 0: none)."""
    if not overfit or fraction > 1.0:
        return -2 * LENGTH_GAIN
    onset = ONSET[model]
    if overfit == "wrong_way":
        onset = ONSET[list(SWIN)[len(SWIN) - 1 - list(SWIN).index(model)]]
    if fraction >= 1.0:  # nothing rises on the full data, unless planted ("full")
        return 0.003 if overfit == "full" else -2 * LENGTH_GAIN
    return RISE_AT_10[model] * (1 - np.log2(fraction / 0.1) / np.log2(onset / 0.1))


def _length_slope(rise: float) -> float:
    """Loss change per doubling of the length that gives `rise` at 500K over the best of 125K/250K."""
    return max(rise / 2, -LENGTH_GAIN) if rise > 0 else max(rise, -LENGTH_GAIN)


def grid_loss(n, d, iters, *, overfit=True, gain_grows: bool = True, large_set: bool = False,
              model: str | None = None) -> tuple[float, float]:
    """(noise-free held-out loss of a run, the part of it that is overfitting)."""
    x = n / 1e8
    b = 0.02 * x ** (0.15 if gain_grows else -0.5)
    base_d = FULL if large_set else d
    loss = 0.38 + 0.03 * x**-0.3 + b * (base_d / 1e6) ** -0.5
    if large_set:
        loss += 0.004  # another distribution: its runs sit above the full smaller set's on that set's val
    doublings = np.log2(iters / LENGTHS[0])
    fraction = d / FULL
    model = model or min(SWIN, key=lambda m: abs(np.log(SWIN[m] / n)))
    slope = _length_slope(planted_rise(model, fraction, overfit)) if not large_set else -LENGTH_GAIN
    over = (slope + LENGTH_GAIN) * doublings
    return float(loss - LENGTH_GAIN * doublings + over), float(over)


def paper_grid(*, seeds: int = 1, noise: float = 0.0, seed_sd: float = 0.0004, overfit=True,
               gain_grows: bool = True, top1_noise: float = 0.0005, top1_slope: float = 0.6,
               weak_model: str | None = None, seed: int = 0) -> pd.DataFrame:
    """The 63-run grid (x `seeds`): run, model, params, dataset, data_size, data_fraction, iters, seed,
    val_loss, eval_finetune_top1. `overfit`: True (the paper's shape), False, "wrong_way" or "full"."""
    rng = np.random.default_rng(seed)
    rows = []
    for model, n in SWIN.items():
        for dataset, fractions in ((SMALL_SET, FRACTIONS), (LARGE_SET, (1.0,))):
            for frac in fractions:
                if (model, dataset, frac) in MISSING:
                    continue
                d = LARGE_SIZE if dataset == LARGE_SET else int(round(frac * FULL))
                for it in LENGTHS:
                    true, over = grid_loss(n, d, it, overfit=overfit, gain_grows=gain_grows,
                                           large_set=dataset == LARGE_SET, model=model)
                    for s in range(seeds):
                        v = true + rng.normal(0, noise) + (rng.normal(0, seed_sd) if seeds > 1 else 0.0)
                        sd = 0.01 if model == weak_model else top1_noise
                        seen = v - RECOVERED[model] * max(over, 0.0)
                        top1 = 0.95 - top1_slope * seen + 0.01 * np.log10(n / 1e8) + rng.normal(0, sd)
                        rows.append({"run": f"{model}-{dataset}-{frac:g}-{it // 1000}k-s{s}", "model": model,
                                     "params": n, "dataset": dataset, "data_size": d, "data_fraction": frac,
                                     "iters": it, "seed": s, "val_loss": float(v),
                                     "eval_finetune_top1": float(top1)})
    return pd.DataFrame(rows)


def large_grid(n_models: int = 10, n_sizes: int = 10, n_lengths: int = 5, seeds: int = 2, seed: int = 0,
               noise: float = 0.0005) -> pd.DataFrame:
    """A balanced grid of n_models x n_sizes x n_lengths x seeds runs (1,000 by default), one dataset,
    without planted overfitting (it times the analysis)."""
    rng = np.random.default_rng(seed)
    params = np.geomspace(2e7, 2e9, n_models)
    sizes = np.round(np.geomspace(1e5, 1.4e7, n_sizes))
    lengths = [int(125_000 * 2**k) for k in range(n_lengths)]
    rows = []
    for i, n in enumerate(params):
        for d in sizes:
            for it in lengths:
                true, _ = grid_loss(n, d, min(it, LENGTHS[-1]), overfit=False)
                for s in range(seeds):
                    v = true + rng.normal(0, noise)
                    rows.append({"model": f"m{i:02d}", "params": n, "data_size": d, "iters": it, "seed": s,
                                 "val_loss": float(v),
                                 "eval_finetune_top1": float(0.95 - 0.6 * v + rng.normal(0, 0.0005))})
    return pd.DataFrame(rows)
