"""Fine-tuning augmentation against timm's definitions (timm/data/auto_augment.py, mixup.py, random_erasing.py,
transforms_factory.py; the official SimMIM fine-tune builds them with ``rand-m9-mstd0.5-inc1``, mixup 0.8,
cutmix 1.0, label smoothing 0.1, random erasing 0.25 in "pixel" mode).

timm cannot run here (it imports torchvision), so each reference value is computed from timm's formulas
written out below and PIL's own calls, which is what timm's ops are. RandAugment ops must give the same
bytes as PIL; mixup / cutmix boxes, lambdas and targets must equal the formulas; random erasing must take
the same draws as timm's loop and have its box and fill distributions.
"""

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from mimscale.evaluate import augment
from mimscale.evaluate.augment import OPS, MixupCutmix, _apply, cutmix_box, rand_augment, random_erasing

# transforms_factory.py: img_mean = tuple(min(255, round(255 * x)) for x in IMAGENET_DEFAULT_MEAN)
TIMM_FILL = (124, 116, 104)
GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


def _timm_reference(op: str, pil: Image.Image, level: float, sign: int, resample) -> Image.Image:
    """timm's op at ``level`` (0..10) with the random sign fixed to ``sign``, on PIL directly."""
    frac = level / 10.0  # _LEVEL_DENOM
    geo = dict(resample=resample, fillcolor=TIMM_FILL)
    if op == "AutoContrast":
        return ImageOps.autocontrast(pil)
    if op == "Equalize":
        return ImageOps.equalize(pil)
    if op == "Invert":
        return ImageOps.invert(pil)
    if op == "Rotate":  # +-30 degrees
        return pil.rotate(sign * frac * 30.0, **geo)
    if op == "ShearX":  # +-0.3, PIL matrix (1, s, 0, 0, 1, 0)
        return pil.transform(pil.size, Image.AFFINE, (1, sign * frac * 0.3, 0, 0, 1, 0), **geo)
    if op == "ShearY":
        return pil.transform(pil.size, Image.AFFINE, (1, 0, 0, sign * frac * 0.3, 1, 0), **geo)
    if op == "TranslateXRel":  # +-0.45 of the width (translate_pct)
        return pil.transform(pil.size, Image.AFFINE, (1, 0, sign * frac * 0.45 * pil.size[0], 0, 1, 0), **geo)
    if op == "TranslateYRel":
        return pil.transform(pil.size, Image.AFFINE, (1, 0, 0, 0, 1, sign * frac * 0.45 * pil.size[1]), **geo)
    if op == "PosterizeIncreasing":  # keep 4 - int(4 level / 10) bits
        bits = 4 - int(frac * 4)
        if bits == 0:
            # Pillow >= 10 refuses 0 bits; the ImageOps.posterize timm was written for masks every bit away.
            return pil.point([0] * 256 * 3)
        return ImageOps.posterize(pil, bits)
    if op == "SolarizeIncreasing":  # threshold 256 - int(256 level / 10)
        return ImageOps.solarize(pil, 256 - int(frac * 256))
    if op == "SolarizeAdd":  # + int(110 level / 10) below 128, capped at 255
        add = int(frac * 110)
        return pil.point([min(255, i + add) if i < 128 else i for i in range(256)] * 3)
    factor = max(0.1, 1.0 + sign * frac * 0.9)  # _enhance_increasing_level_to_arg
    enhancer = {"ColorIncreasing": ImageEnhance.Color, "ContrastIncreasing": ImageEnhance.Contrast,
                "BrightnessIncreasing": ImageEnhance.Brightness, "SharpnessIncreasing": ImageEnhance.Sharpness}[op]
    return enhancer(pil).enhance(factor)


class _Sign:
    """The one draw an op makes: timm negates its argument with probability 1/2; mimscale negates when its
    draw is below 1/2."""

    def __init__(self, sign: int):
        self.value = 0.25 if sign < 0 else 0.75

    def random(self) -> float:
        return self.value


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)  # non-square, every level
    yy, xx = np.mgrid[0:20, 0:24]
    smooth = np.stack([xx * 10, yy * 12, (xx + yy) * 5], -1).astype(np.uint8)  # flat runs and ramps
    narrow = rng.integers(60, 190, (16, 16, 3), dtype=np.uint8)  # autocontrast / equalize stretch it
    tiny = rng.integers(0, 256, (2, 5, 3), dtype=np.uint8)  # no interior pixel: sharpness's filter is a no-op
    return [noise, smooth, narrow, tiny]


@pytest.mark.parametrize("op", OPS)
def test_randaugment_op_gives_pils_bytes(op):
    modes = ("bilinear", "bicubic") if op in GEOMETRIC else ("bilinear",)
    for arr in _images():
        pil = Image.fromarray(arr)
        img = torch.from_numpy(arr).permute(2, 0, 1) / 255
        for mode in modes:
            resample = Image.BICUBIC if mode == "bicubic" else Image.BILINEAR
            for level in (0.0, 3.7, 9.0, 9.6, 10.0):
                for sign in (1, -1):
                    ref = np.asarray(_timm_reference(op, pil, level, sign, resample)).astype(np.int64)
                    out = (_apply(op, img, level, _Sign(sign), mode) * 255).round().long().permute(1, 2, 0)
                    # Exact: the same integer arithmetic, truncation and operation order as PIL's C.
                    assert np.array_equal(out.numpy(), ref), (op, mode, level, sign, arr.shape)


def test_level_arguments_at_magnitude_9():
    """The numbers the default policy uses, from timm's level functions at level 9."""
    img = torch.from_numpy(np.arange(256, dtype=np.int64).reshape(1, 16, 16).repeat(3, 0)) / 255
    levels = (img * 255).round().long()
    post = (_apply("PosterizeIncreasing", img, 9, None) * 255).round().long()
    assert torch.equal(post, levels & 0x80)  # 4 - int(3.6) = 1 bit kept
    sol = (_apply("SolarizeIncreasing", img, 9, None) * 255).round().long()
    assert torch.equal(sol, torch.where(levels < 26, levels, 255 - levels))  # 256 - int(230.4) = 26
    add = (_apply("SolarizeAdd", img, 9, None) * 255).round().long()
    assert torch.equal(add, torch.where(levels < 128, (levels + 99).clamp(max=255), levels))  # int(99.0)
    bright = (_apply("BrightnessIncreasing", img, 9, _Sign(1)) * 255).round().long()
    expected = (levels.float() * torch.tensor(1.81, dtype=torch.float32)).clamp(0, 255).long()  # 1 + 0.81
    assert torch.equal(bright, expected)
    dark = (_apply("BrightnessIncreasing", img, 9, _Sign(-1)) * 255).round().long()
    assert torch.equal(dark, (levels.float() * torch.tensor(1 - 0.81, dtype=torch.float32)).long())


def test_randaugment_schedule_matches_timm(monkeypatch):
    """Ops uniform with replacement, each kept with p = 0.5, magnitude gauss(9, 0.5) clipped to [0, 10]."""
    calls = []

    def record(op, q, m, rng, mode):
        calls.append((op, m, mode))
        return q

    monkeypatch.setattr(augment, "_apply_levels", record)
    img = torch.zeros(3, 4, 4)
    rng = np.random.default_rng(123)
    trials, n = 4000, 2
    for _ in range(trials):
        rand_augment(img, n, 9.0, 0.5, rng, mode="bicubic")
    draws = trials * n
    applied = len(calls)
    assert abs(applied / draws - 0.5) < 5 * math.sqrt(0.25 / draws)
    counts = np.array([sum(1 for c in calls if c[0] == op) for op in OPS])
    p = 1 / len(OPS)
    assert (np.abs(counts / applied - p) < 5 * math.sqrt(p * (1 - p) / applied)).all()
    mags = np.array([c[1] for c in calls])
    assert mags.min() >= 0.0 and mags.max() == 10.0  # clipped at _LEVEL_DENOM, never above
    at_cap = (mags == 10.0).mean()  # P(N(9, 0.5) >= 10) = P(Z >= 2) = 0.02275
    assert abs(at_cap - 0.02275) < 5 * math.sqrt(0.02275 * 0.97725 / applied)
    below = mags[mags < 10.0]
    assert abs(np.median(mags) - 9.0) < 0.05 and 0.45 < below.std() < 0.5  # truncated-normal spread
    assert {c[2] for c in calls} == {"bicubic"}  # the configured interpolation, not timm's random choice
    calls.clear()
    rand_augment(img, 2, 9.0, 0.0, np.random.default_rng(0), prob=1.0)
    assert [c[1] for c in calls] == [9.0, 9.0]  # mstd 0: the fixed magnitude
    calls.clear()
    rand_augment(img, 1, 20.0, 0.0, np.random.default_rng(0), prob=1.0)
    assert [c[1] for c in calls] == [10.0]  # clipped with or without a spread, as timm does


class _Script:
    """A generator that returns scripted draws and records what was asked."""

    def __init__(self, randoms=(), betas=(), ints=()):
        self.randoms, self.betas, self.ints = list(randoms), list(betas), list(ints)
        self.beta_args, self.int_args = [], []

    def random(self):
        return self.randoms.pop(0)

    def beta(self, a, b):
        self.beta_args.append((a, b))
        return self.betas.pop(0)

    def integers(self, high):
        self.int_args.append(high)
        value = self.ints.pop(0)
        assert 0 <= value < high
        return value


@pytest.mark.parametrize("shape, lam, centre, box, corrected", [
    # cut = int(32 sqrt(0.25)) = 16, half 8: y [2-8, 2+8] -> [0, 10], x [22, 38] -> [22, 32]; 1 - 100 / 1024
    ((4, 3, 32, 32), 0.75, (2, 30), (0, 10, 22, 32), 1 - 100 / 1024),
    # cut_h = int(24 * 0.8) = 19, cut_w = int(40 * 0.8) = 32; halves 9, 16 (timm's box side is 2 * (cut // 2))
    ((2, 3, 24, 40), 0.36, (12, 20), (3, 21, 4, 36), 1 - 18 * 32 / 960),
    # lam 1: an empty box, nothing pasted
    ((2, 1, 8, 8), 1.0, (5, 5), (5, 5, 5, 5), 1.0),
])
def test_cutmix_box_is_timms_rand_bbox(shape, lam, centre, box, corrected):
    rng = _Script(ints=list(centre))
    got_box, got_lam = cutmix_box(shape, lam, rng)
    assert got_box == box and got_lam == pytest.approx(corrected, abs=1e-15)
    assert rng.int_args == [shape[-2], shape[-1]]  # centre row ~ U{0..H-1} first, then column ~ U{0..W-1}


def test_mixup_and_cutmix_batches_match_timm_formulas():
    k, smoothing = 5, 0.1
    x = torch.randn(4, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 3, 1, 4])
    off, on = smoothing / k, 1 - smoothing + smoothing / k
    y1 = torch.full((4, k), off).scatter_(1, y.view(-1, 1), on)
    y2 = torch.full((4, k), off).scatter_(1, y.flip(0).view(-1, 1), on)
    mix = MixupCutmix(k, mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, smoothing=smoothing)

    # Mixup: prob draw 0.2 < 1 mixes; switch draw 0.7 >= 0.5 picks mixup, lam ~ Beta(0.8, 0.8).
    rng = _Script(randoms=[0.2, 0.7], betas=[0.3])
    xm, t = mix(x.clone(), y, rng)
    assert rng.beta_args == [(0.8, 0.8)]
    assert torch.equal(xm, x * 0.3 + x.flip(0) * (1 - 0.3))
    assert torch.allclose(t, y1 * 0.3 + y2 * 0.7, atol=1e-7, rtol=0)

    # CutMix: switch draw 0.4 < 0.5, lam ~ Beta(1, 1) = 0.36, the box of the case above, lam corrected to 0.4.
    rng = _Script(randoms=[0.2, 0.4], betas=[0.36], ints=[12, 20])
    xc, t = mix(x.clone(), y, rng)
    assert rng.beta_args == [(1.0, 1.0)]
    expected = x.clone()
    expected[:, :, 3:21, 4:36] = x.flip(0)[:, :, 3:21, 4:36]
    assert torch.equal(xc, expected)
    lam = 1 - 18 * 32 / 960
    assert torch.allclose(t, y1 * lam + y2 * (1 - lam), atol=1e-7, rtol=0)

    # Only one of them on: no switch draw.
    rng = _Script(randoms=[0.0], betas=[0.5], ints=[0, 0])
    MixupCutmix(k, mixup_alpha=0.0, cutmix_alpha=1.0, smoothing=smoothing)(x.clone(), y, rng)
    assert rng.beta_args == [(1.0, 1.0)] and not rng.randoms
    # The batch is left alone when the prob draw is not below prob; targets are still smoothed.
    rng = _Script(randoms=[0.6])
    xs, t = MixupCutmix(k, prob=0.6, smoothing=smoothing)(x.clone(), y, rng)
    assert torch.equal(xs, x) and torch.allclose(t, y1)


def _timm_erase_reference(x: torch.Tensor, prob: float, seed: int) -> torch.Tensor:
    """timm's RandomErasing._erase per sample ('pixel' mode, count 1), its draws taken from a numpy generator
    in the same order: probability, then per try area and log-aspect, then top, left and the noise."""
    rng = np.random.default_rng(seed)
    out = x.clone()
    _, c, h, w = x.shape
    for i in range(len(x)):
        if rng.random() > prob:
            continue
        for _ in range(10):
            target_area = rng.uniform(0.02, 1 / 3) * (h * w)
            aspect = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
            eh = int(round(math.sqrt(target_area * aspect)))
            ew = int(round(math.sqrt(target_area / aspect)))
            if ew < w and eh < h:
                top = rng.integers(0, h - eh + 1)  # random.randint(0, h - eh): both ends included
                left = rng.integers(0, w - ew + 1)
                out[i, :, top:top + eh, left:left + ew] = torch.from_numpy(
                    rng.standard_normal((c, eh, ew)).astype(np.float32))
                break
    return out


def test_random_erasing_takes_timms_draws():
    x = torch.full((64, 3, 20, 12), 7.0)
    for seed in range(3):
        got = random_erasing(x.clone(), 0.25, np.random.default_rng(seed))
        assert torch.equal(got, _timm_erase_reference(x, 0.25, seed))
    # Tiny images: a box rounded to zero rows or columns is accepted and erases nothing (timm's test is
    # only ``w < img_w and h < img_h``), so a sample can be selected and stay as it was.
    tiny = torch.full((200, 1, 3, 3), 7.0)
    got = random_erasing(tiny.clone(), 1.0, np.random.default_rng(0))
    assert torch.equal(got, _timm_erase_reference(tiny, 1.0, 0))
    assert (got == 7.0).all(dim=(1, 2, 3)).any()


def test_random_erasing_box_and_fill_distributions():
    n, h, w = 3000, 40, 40
    x = torch.full((n, 1, h, w), float("nan"))  # NaN marks what was not erased
    out = random_erasing(x, 0.25, np.random.default_rng(7))
    erased = ~torch.isnan(out[:, 0])
    selected = erased.flatten(1).any(1)
    rate = selected.float().mean().item()
    assert abs(rate - 0.25) < 5 * math.sqrt(0.25 * 0.75 / n)
    rows = erased.any(2).sum(1)[selected].float()  # box height per erased sample
    cols = erased.any(1).sum(1)[selected].float()
    area = rows * cols / (h * w)
    assert torch.equal(erased.flatten(1).sum(1)[selected].float(), rows * cols)  # one rectangle each
    # Area ~ U(0.02, 1/3) of the image before rounding the sides; boxes with a side >= 40 are redrawn.
    assert area.min() >= 0.015 and area.max() <= 0.36
    assert 0.15 < area.mean() < 0.18  # U(0.02, 1/3) has mean 0.177; redrawn tall / wide boxes lower it a little
    log_aspect = torch.log(rows / cols)
    bound = math.log(1 / 0.3) + 0.3  # rounding a side to whole pixels moves the ratio a little
    assert log_aspect.abs().max() <= bound and abs(log_aspect.mean()) < 0.05  # symmetric log-uniform
    # Fill: independent N(0, 1) per pixel (and per channel in 'pixel' mode).
    values = out[:, 0][erased].double()
    m = len(values)
    assert abs(values.mean()) < 5 / math.sqrt(m) and abs(values.std() - 1) < 5 * math.sqrt(0.5 / m)
    pairs = erased[:, :, :-1] & erased[:, :, 1:]
    left, right = out[:, 0, :, :-1][pairs].double(), out[:, 0, :, 1:][pairs].double()
    corr = torch.corrcoef(torch.stack([left, right]))[0, 1]
    assert abs(corr) < 5 / math.sqrt(len(left))
    rgb = random_erasing(torch.full((50, 3, 16, 16), float("nan")), 1.0, np.random.default_rng(1))
    chans = rgb[~torch.isnan(rgb[:, 0:1]).expand_as(rgb)].view(-1)
    assert not torch.isnan(chans).any()  # every channel of the box erased
