"""Fine-tuning augmentation: RandAugment ops, mixup / cutmix targets, random erasing; all seeded."""

import numpy as np
import pytest
import torch

from mimscale.evaluate.augment import OPS, MixupCutmix, _apply, one_hot_smooth, rand_augment, random_erasing


@pytest.mark.parametrize("op", OPS)
def test_every_randaugment_op_keeps_shape_and_range(op):
    img = torch.randint(0, 256, (3, 16, 16)) / 255  # 8-bit values, as the fine-tuning crops hold
    for m in (0.0, 5.0, 10.0):
        out = _apply(op, img, m, np.random.default_rng(0))
        assert out.shape == img.shape and torch.isfinite(out).all()
        assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6


def test_randaugment_identity_ops_and_determinism():
    img = torch.randint(0, 256, (3, 16, 16)) / 255
    assert torch.allclose(_apply("Invert", _apply("Invert", img, 9, None), 9, None), img)
    a = rand_augment(img, 2, 9, 0.5, np.random.default_rng(3))
    b = rand_augment(img, 2, 9, 0.5, np.random.default_rng(3))
    assert torch.equal(a, b)
    assert torch.equal(rand_augment(img, 0, 9, 0.5, np.random.default_rng(3)), img)


def test_mixup_cutmix_soft_targets():
    x = torch.randn(8, 3, 16, 16)
    y = torch.arange(8) % 5
    smooth = one_hot_smooth(y, 5, 0.1)
    assert torch.allclose(smooth.sum(1), torch.ones(8)) and smooth.max() == pytest.approx(0.92)
    for mix in (MixupCutmix(5, 0.8, 0.0), MixupCutmix(5, 0.0, 1.0), MixupCutmix(5, 0.8, 1.0)):
        xm, t = mix(x, y, np.random.default_rng(1))
        assert xm.shape == x.shape and torch.allclose(t.sum(1), torch.ones(8))
        # The target's share of each sample's own label is the share of its pixels / weight.
        own = (t * one_hot_smooth(y, 5, 0.0)).sum(1)
        assert (own >= 0.0).all() and (own <= 1.0).all()
    cut = MixupCutmix(5, 0.0, 1.0, smoothing=0.0)
    xm, t = cut(x, y, np.random.default_rng(2))
    kept = (xm == x).all(dim=1).float().mean(dim=(1, 2))  # fraction of pixels kept from the sample
    pasted_from_other = y != y.flip(0)
    assert torch.allclose(t[pasted_from_other].gather(1, y[pasted_from_other].view(-1, 1)).squeeze(1),
                          kept[pasted_from_other], atol=1e-6)
    off = MixupCutmix(5, 0.0, 0.0, smoothing=0.1)
    xo, to = off(x, y, np.random.default_rng(0))
    assert torch.equal(xo, x) and torch.allclose(to, smooth)


def test_random_erasing_is_seeded_and_partial():
    x = torch.zeros(16, 3, 32, 32)
    a = random_erasing(x.clone(), 0.5, np.random.default_rng(0))
    b = random_erasing(x.clone(), 0.5, np.random.default_rng(0))
    assert torch.equal(a, b)
    erased = (a != 0).flatten(1).any(1)
    assert 0 < erased.sum() < 16
    assert (a != 0).float().mean() < 0.34  # at most a third of an image per box
