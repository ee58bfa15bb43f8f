import math

import numpy as np
import pytest
import torch

from mimscale.masking import MaskGenerator, upsample_mask


def test_paper_mask_exact_count_and_shape():
    gen = MaskGenerator(192, 32, 4, 0.6)
    m = gen(np.random.default_rng(0))
    assert m.shape == (48, 48)
    assert gen.num_masked == math.ceil(36 * 0.6) == 22
    # each 8x8 token block is one mask unit: constant inside, 22 units masked
    units = m.reshape(6, 8, 6, 8)
    assert (units.min(axis=(1, 3)) == units.max(axis=(1, 3))).all()
    assert units[:, 0, :, 0].sum() == 22
    assert m.sum() == 22 * 64


@pytest.mark.parametrize("seed", range(5))
def test_fixed_count_not_bernoulli(seed):
    gen = MaskGenerator(32, 8, 2, 0.6)
    counts = {int(gen(np.random.default_rng([seed, i])).sum()) for i in range(50)}
    assert counts == {10 * 16}  # ceil(16 * 0.6) = 10 units of 4x4 tokens, every time


def test_determinism_under_seed():
    gen = MaskGenerator()
    a = gen(np.random.default_rng(123))
    b = gen(np.random.default_rng(123))
    c = gen(np.random.default_rng(124))
    assert (a == b).all() and (a != c).any()
    assert (gen.validation_mask(0, 7) == gen.validation_mask(0, 7)).all()
    assert (gen.validation_mask(0, 7) != gen.validation_mask(0, 8)).any()
    assert (gen.validation_mask(0, 7) != gen.validation_mask(1, 7)).any()


@pytest.mark.parametrize("args, constraint", [((190, 32, 4), "input_size"), ((192, 64, 5), "mask_patch_size"),
                                              ((192, 32, 3), "mask_patch_size")])
def test_indivisible_sizes_raise_naming_the_constraint(args, constraint):
    with pytest.raises(ValueError, match=f"{constraint}.*divisible"):
        MaskGenerator(*args)


def test_upsample_to_pixels():
    gen = MaskGenerator(32, 8, 4, 0.5)
    m = torch.from_numpy(gen(np.random.default_rng(0)))[None]
    px = upsample_mask(m, 4)
    assert px.shape == (1, 1, 32, 32)
    assert px.sum() == m.sum() * 16
    assert px[0, 0, ::4, ::4].equal(m[0])


@pytest.mark.parametrize("field", ["input_size", "mask_patch_size", "model_patch_size"])
@pytest.mark.parametrize("value", [0, -32, 32.0])
def test_mask_generator_refuses_sizes_that_are_not_positive_integers(field, value):
    with pytest.raises(ValueError, match=f"{field} must be a positive integer"):
        MaskGenerator(**{"input_size": 64, "mask_patch_size": 32, "model_patch_size": 4, field: value})
