"""Shared set-up of the benchmark scripts: the 192 px Swin V2 of issue 9 and a random masked batch."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from mimscale.masking import MaskGenerator
from mimscale.models import build_model


def swin192(embed_dim: int, img_size: int = 192):
    """Depths 2,2,6,2, heads 3,6,12,24, window 12, patch 4: the issue-9 configuration at width ``embed_dim``."""
    return build_model("swinv2", img_size=img_size, patch_size=4, embed_dim=embed_dim, depths=(2, 2, 6, 2),
                       num_heads=(3, 6, 12, 24), window_size=12)


def masked_batch(batch: int, img_size: int, patch: int, unit: int = 32, seed: int = 0):
    """Random images and SimMIM masks (ratio 0.6, ``unit`` px mask units) of a fixed seed."""
    gen = MaskGenerator(img_size, unit, patch, 0.6)
    rng = np.random.default_rng(seed)
    img = torch.randn(batch, 3, img_size, img_size)
    return img, torch.stack([torch.from_numpy(gen(rng)) for _ in range(batch)])


def alternating_rates(steps: dict[str, Callable[[], object]], rounds: int, iters: int, batch: int) -> dict[str, list[float]]:
    """Images/s of each named step over ``rounds`` timed rounds of ``iters`` steps, the steps taking turns
    within every round so that machine noise (other processes, clocks) hits all of them alike."""
    rates: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            t0 = time.perf_counter()
            for _ in range(iters):
                step()
            rates[key].append(iters * batch / (time.perf_counter() - t0))
    return rates
