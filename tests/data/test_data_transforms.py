"""RandomResizedCrop bounds, train/eval transforms, the JPEG draft fast path, normalisation."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mimscale.data import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, Normalize, TrainTransform, rrc_params


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 600), st.integers(1, 600),
    st.floats(0.05, 1.0), st.floats(0.05, 1.0),
    st.floats(0.3, 1.0), st.floats(1.0, 3.0),
    st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_rrc_boxes_respect_bounds(h, w, s1, s2, r_lo, r_hi, seed):
    scale = (min(s1, s2), max(s1, s2))
    ratio = (r_lo, r_hi)
    top, left, bh, bw = rrc_params(h, w, scale, ratio, np.random.default_rng(seed))
    assert 0 <= top and 0 <= left and 1 <= bh and 1 <= bw
    assert top + bh <= h and left + bw <= w
    # replay the 10 tries to tell a sampled box from the fallback
    tries = np.random.default_rng(seed).random((10, 2))
    sampled = False
    for ua, ur in tries:
        t = h * w * (scale[0] + (scale[1] - scale[0]) * ua)
        a = math.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * ur)
        cw, ch = int(round(math.sqrt(t * a))), int(round(math.sqrt(t / a)))
        if 0 < cw <= w and 0 < ch <= h:
            sampled = True
            break
    if sampled:
        # rounding each side by <= 0.5 px moves the area by <= (bw + bh) / 2 + 1/4
        slack = (bw + bh) / 2 + 0.25
        assert scale[0] * h * w - slack <= bh * bw <= scale[1] * h * w + slack
        assert ratio[0] * (bh - 0.5) - 0.5 <= bw <= ratio[1] * (bh + 0.5) + 0.5
    else:  # fallback: centred, full along one side, aspect clamped into the bounds when possible
        assert bw == w or bh == h
        assert abs(top - (h - bh) // 2) <= 0 and abs(left - (w - bw) // 2) <= 0


def test_rrc_samples_cover_the_scale_range():
    rng = np.random.default_rng(0)
    areas = [
        np.prod(rrc_params(375, 500, (0.67, 1.0), (3 / 4, 4 / 3), rng)[2:]) / (375 * 500) for _ in range(2000)
    ]
    assert min(areas) < 0.69 and max(areas) > 0.95
    assert all(0.66 <= a <= 1.0 for a in areas)


def _photo(w=120, h=90):
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)


@pytest.mark.parametrize("inp", ["pil", "numpy", "tensor"])
def test_train_transform_output_and_determinism(inp):
    img = _photo()
    x = {"pil": img, "numpy": np.asarray(img), "tensor": torch.from_numpy(np.array(img))}[inp]
    t = TrainTransform(32)
    a = t(x, np.random.default_rng(5))
    b = t(x, np.random.default_rng(5))
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, t(x, np.random.default_rng(6)))


def test_train_transform_matches_a_reference_crop_resize_flip():
    img = _photo()
    t = TrainTransform(32)
    rng = np.random.default_rng(3)
    flips = []
    for _ in range(6):  # see both flip outcomes
        state = rng.bit_generator.state
        out = t.crop_resize(img, rng)
        ref_rng = np.random.default_rng()
        ref_rng.bit_generator.state = state
        top, left, h, w = rrc_params(90, 120, t.scale, t.ratio, ref_rng)
        flip = ref_rng.random() < 0.5
        ref = img.crop((left, top, left + w, top + h)).resize((32, 32), Image.BILINEAR)
        if flip:
            ref = ref.transpose(Image.FLIP_LEFT_RIGHT)
        ref = torch.from_numpy(np.asarray(ref).copy()).permute(2, 0, 1).float()
        assert (out.float() - ref).abs().max() <= 3  # PIL's and torch's antialiased bilinear agree
        flips.append(flip)
    assert set(flips) == {True, False}


def test_normalize_is_imagenet_mean_std():
    x = torch.full((3, 2, 2), 255, dtype=torch.uint8)
    y = Normalize()(x)
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(y[:, 0, 0], expected)
    torch.testing.assert_close(Normalize().invert(y), torch.ones(3, 2, 2))


def test_eval_transform_resizes_shorter_side_and_center_crops():
    arr = np.zeros((40, 80, 3), dtype=np.uint8)
    arr[:, 30:50] = 255  # a white band in the middle
    out = EvalTransform(20, resize=20).crop_resize(arr)  # -> 20x40, crop the central 20x20
    assert out.shape == (3, 20, 20)
    assert out[:, :, 6:14].float().mean() > 240 and out[:, :, :3].float().mean() < 15
    same = EvalTransform(32)(np.full((32, 32, 3), 7, np.uint8))
    torch.testing.assert_close(same, Normalize()(torch.full((3, 32, 32), 7, dtype=torch.uint8)))
    with pytest.raises(ValueError):
        EvalTransform(32, resize=16)


def _jpeg(img, quality=95):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_jpeg_draft_used_only_when_the_crop_allows_and_stays_faithful():
    data = _jpeg(_photo(400, 300))
    t = TrainTransform(64, scale=(0.9, 1.0), ratio=(1.0, 1.0))  # crop ~285 px >= 4 * 64
    lazy = Image.open(io.BytesIO(data))
    fast = t.crop_resize(lazy, np.random.default_rng(0))
    assert lazy.size == (100, 75)  # decoded at 1/4 scale
    full = TrainTransform(64, scale=(0.9, 1.0), ratio=(1.0, 1.0), draft=False)
    slow = full.crop_resize(Image.open(io.BytesIO(data)), np.random.default_rng(0))
    assert (fast.float() - slow.float()).abs().mean() < 4.0  # DCT scaling ~ antialiased downscale
    big = TrainTransform(256)  # crop < 2 * 256: no reduction possible
    lazy = Image.open(io.BytesIO(data))
    big.crop_resize(lazy, np.random.default_rng(0))
    assert lazy.size == (400, 300)


def test_eval_transform_uses_draft_too():
    data = _jpeg(_photo(400, 300))
    lazy = Image.open(io.BytesIO(data))
    out = EvalTransform(64, resize=72).crop_resize(lazy)
    assert out.shape == (3, 64, 64) and lazy.size == (100, 75)
    ref = EvalTransform(64, resize=72, draft=False).crop_resize(Image.open(io.BytesIO(data)))
    assert (out.float() - ref.float()).abs().mean() < 4.0


def test_grey_and_rgba_inputs_become_rgb():
    t = TrainTransform(16)
    for mode in ("L", "RGBA", "P"):
        img = _photo().convert(mode)
        assert t(img, np.random.default_rng(0)).shape == (3, 16, 16)


def test_zero_copy_pixel_view_matches_the_copying_path(monkeypatch):
    from mimscale.data import transforms as T

    img = _photo(200, 150)
    view, keep = T._rgbx_view(img)
    assert view is not None and keep is not None  # Pillow with Arrow export
    np.testing.assert_array_equal(view[..., :3], np.asarray(img))
    fast = [TrainTransform(48)(img, np.random.default_rng(s)) for s in range(4)]
    fast_eval = EvalTransform(48, resize=56)(img)
    monkeypatch.setattr(T, "_rgbx_view", lambda im: (None, None))
    for s in range(4):
        assert torch.equal(TrainTransform(48)(img, np.random.default_rng(s)), fast[s])
    assert torch.equal(EvalTransform(48, resize=56)(img), fast_eval)
