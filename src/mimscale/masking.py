"""The SimMIM mask generator (docs/METHOD.md, Masking) and the fixed validation masks (Validation loss).

A mask is drawn on a coarse grid of *mask units* (``mask_patch_size`` pixels square), with exactly
``ceil(units * mask_ratio)`` units masked (a fixed count chosen by a random permutation, never
Bernoulli), then repeated to the model's token grid (``model_patch_size`` pixels per token).
1 means masked. Pure functions of a numpy Generator, so masks are reproducible from a seed.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

# Validation masks are keyed by (seed, image index) only, never by worker, batch or rank.
# A fixed namespace keeps them independent of every other random stream seeded with the same number.
_VAL_MASK_STREAM = 0x5EED_3A5C


@dataclass(frozen=True)
class MaskGenerator:
    input_size: int = 192
    mask_patch_size: int = 32
    model_patch_size: int = 4
    mask_ratio: float = 0.6

    def __post_init__(self) -> None:
        for name in ("input_size", "mask_patch_size", "model_patch_size"):
            if not isinstance(getattr(self, name), numbers.Integral) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.input_size % self.mask_patch_size != 0:
            raise ValueError(
                f"input_size ({self.input_size}) must be divisible by mask_patch_size ({self.mask_patch_size})"
            )
        if self.mask_patch_size % self.model_patch_size != 0:
            raise ValueError(
                f"mask_patch_size ({self.mask_patch_size}) must be divisible by model_patch_size "
                f"({self.model_patch_size})"
            )
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")

    @property
    def units_per_side(self) -> int:
        return self.input_size // self.mask_patch_size

    @property
    def scale(self) -> int:
        """Tokens per mask unit along one axis."""
        return self.mask_patch_size // self.model_patch_size

    @property
    def num_masked(self) -> int:
        return math.ceil(self.units_per_side**2 * self.mask_ratio)

    @property
    def token_grid(self) -> int:
        return self.input_size // self.model_patch_size

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        """One token-level mask of shape (token_grid, token_grid), uint8, 1 = masked."""
        units = self.units_per_side**2
        chosen = rng.permutation(units)[: self.num_masked]
        coarse = np.zeros(units, dtype=np.uint8)
        coarse[chosen] = 1
        coarse = coarse.reshape(self.units_per_side, self.units_per_side)
        return coarse.repeat(self.scale, axis=0).repeat(self.scale, axis=1)

    def validation_mask(self, seed: int, index: int) -> np.ndarray:
        """The fixed mask of held-out image ``index``: a function of (seed, index) alone."""
        return self(np.random.default_rng([_VAL_MASK_STREAM, int(seed), int(index)]))


def upsample_mask(mask, patch_size: int):
    """Token mask (B, h, w) tensor -> pixel mask (B, 1, h*patch, w*patch)."""
    return mask.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2).unsqueeze(1)
