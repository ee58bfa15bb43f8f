"""Fine-tuning augmentation on tensors, without torchvision (docs/METHOD.md, Fine-tuning and other evaluations).

- ``rand_augment``: the timm ``rand-m9-mstd0.5-inc1`` policy (the "increasing" op set: each op gets
  stronger with the magnitude), on one (C, H, W) float image in [0, 1].
- ``MixupCutmix``: batch mixup (alpha 0.8) or cutmix (alpha 1.0), one of them per batch with
  probability 1/2 each, with label-smoothed soft targets.
- ``random_erasing``: timm's "pixel" mode, per sample, on the normalised batch.

Every random draw comes from a ``numpy.random.Generator`` the caller seeds, so augmentation is a
function of (seed, epoch, sample index), not of worker scheduling.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# ImageNet mean in [0, 1]: what timm fills the corners of rotated / sheared / translated images with.
_FILL = (0.485, 0.456, 0.406)
_MAX_LEVEL = 10.0  # magnitudes are on timm's 0..10 scale
_GREY = (0.299, 0.587, 0.114)  # PIL's "L" conversion weights


def _grey(img: torch.Tensor) -> torch.Tensor:
    if img.shape[0] != 3:
        return img.mean(0, keepdim=True)
    w = img.new_tensor(_GREY).view(3, 1, 1)
    return (img * w).sum(0, keepdim=True)


def _blend(degenerate: torch.Tensor, img: torch.Tensor, factor: float) -> torch.Tensor:
    # PIL ImageEnhance: factor 0 -> degenerate, 1 -> original, >1 extrapolates.
    return (degenerate + (img - degenerate) * factor).clamp(0, 1)


def _affine(img: torch.Tensor, theta: list[list[float]], mode: str = "bilinear") -> torch.Tensor:
    """Warp by a 2x3 matrix in normalised [-1, 1] coordinates (output -> input), fill outside with _FILL;
    ``mode`` bilinear or bicubic (the official fine-tune's, which can overshoot: clamped to [0, 1])."""
    c, h, w = img.shape
    grid = F.affine_grid(img.new_tensor(theta)[None], [1, c, h, w], align_corners=False)
    both = torch.cat([img, img.new_ones(1, h, w)])[None]  # last channel tracks what came from inside
    out = F.grid_sample(both, grid, mode=mode, padding_mode="zeros", align_corners=False)[0]
    if mode != "bilinear":
        out = out.clamp(0, 1)
    inside = out[-1:]
    fill = img.new_tensor(_FILL[:c] if c <= 3 else [0.5] * c).view(c, 1, 1)
    return out[:-1] + (1 - inside) * fill


def _equalize(img: torch.Tensor) -> torch.Tensor:
    """Per-channel histogram equalisation on 256 levels (PIL ImageOps.equalize)."""
    q = (img * 255).round().long().clamp(0, 255)
    out = []
    for ch in q:
        hist = torch.bincount(ch.flatten(), minlength=256)
        nonzero = hist[hist > 0]
        step = (hist.sum() - nonzero[-1]) // 255 if len(nonzero) else 0
        if step == 0:
            out.append(ch.float() / 255)
            continue
        lut = ((torch.cumsum(hist, 0) + step // 2) // step).clamp(max=255)
        lut = torch.cat([lut.new_zeros(1), lut[:-1]])
        out.append(lut[ch].float() / 255)
    return torch.stack(out)


def _sharpen_degenerate(img: torch.Tensor) -> torch.Tensor:
    # PIL's SMOOTH kernel; the one-pixel border keeps the original values.
    k = img.new_tensor([[1, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13
    c = img.shape[0]
    smooth = F.conv2d(img[None], k.expand(c, 1, 3, 3), groups=c)[0]
    out = img.clone()
    out[:, 1:-1, 1:-1] = smooth
    return out


def _signed(v: float, rng: np.random.Generator) -> float:
    return -v if rng.random() < 0.5 else v


def _apply(op: str, img: torch.Tensor, m: float, rng: np.random.Generator, mode: str = "bilinear") -> torch.Tensor:
    """One op at magnitude ``m`` in [0, 10] (timm's level functions for the increasing set)."""
    f = m / _MAX_LEVEL
    if op == "AutoContrast":
        lo = img.amin(dim=(1, 2), keepdim=True)
        hi = img.amax(dim=(1, 2), keepdim=True)
        return torch.where(hi > lo, (img - lo) / (hi - lo).clamp_min(1e-8), img)
    if op == "Equalize":
        return _equalize(img)
    if op == "Invert":
        return 1 - img
    if op == "Rotate":
        a = math.radians(_signed(30 * f, rng))
        return _affine(img, [[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0]], mode)
    if op == "ShearX":
        return _affine(img, [[1, _signed(0.3 * f, rng), 0], [0, 1, 0]], mode)
    if op == "ShearY":
        return _affine(img, [[1, 0, 0], [_signed(0.3 * f, rng), 1, 0]], mode)
    if op == "TranslateXRel":  # a fraction (up to 0.45) of the width; normalised units span 2
        return _affine(img, [[1, 0, 2 * _signed(0.45 * f, rng)], [0, 1, 0]], mode)
    if op == "TranslateYRel":
        return _affine(img, [[1, 0, 0], [0, 1, 2 * _signed(0.45 * f, rng)]], mode)
    if op == "PosterizeIncreasing":
        bits = 4 - int(f * 4)
        q = (img * 255).round().long() & (0xFF << (8 - bits) & 0xFF)
        return q.float() / 255
    if op == "SolarizeIncreasing":
        thresh = (256 - int(f * 256)) / 255
        return torch.where(img >= thresh, 1 - img, img)
    if op == "SolarizeAdd":
        add = int(f * 110) / 255
        return torch.where(img < 128 / 255, (img + add).clamp(max=1), img)
    factor = 1.0 + _signed(0.9 * f, rng)  # the enhance ops: 1 = identity
    if op == "ColorIncreasing":
        return _blend(_grey(img).expand_as(img), img, factor)
    if op == "ContrastIncreasing":
        return _blend(_grey(img).mean().expand_as(img), img, factor)
    if op == "BrightnessIncreasing":
        return _blend(torch.zeros_like(img), img, factor)
    if op == "SharpnessIncreasing":
        return _blend(_sharpen_degenerate(img), img, factor)
    raise ValueError(f"unknown RandAugment op {op}")


OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
       "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
       "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


def rand_augment(img: torch.Tensor, n: int, m: float, mstd: float, rng: np.random.Generator,
                 prob: float = 0.5, mode: str = "bilinear") -> torch.Tensor:
    """``n`` ops drawn with replacement, each applied with probability ``prob`` at magnitude
    N(m, mstd) clipped to [0, 10] (timm's defaults for ``rand-m{m}-mstd{mstd}-inc1``)."""
    if n <= 0:
        return img
    for op in rng.choice(OPS, size=n, replace=True):
        if rng.random() > prob:
            continue
        mag = float(np.clip(rng.normal(m, mstd), 0, _MAX_LEVEL)) if mstd > 0 else float(m)
        img = _apply(str(op), img, mag, rng, mode)
    return img


def one_hot_smooth(y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    off = smoothing / num_classes
    out = torch.full((y.shape[0], num_classes), off, device=y.device)
    return out.scatter_(1, y.view(-1, 1), 1.0 - smoothing + off)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


class MixupCutmix:
    """timm ``Mixup`` in batch mode: each batch is mixed with its reverse, by mixup or by cutmix."""

    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0,
                 prob: float = 1.0, switch_prob: float = 0.5, smoothing: float = 0.1):
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob, self.smoothing = prob, switch_prob, smoothing

    @property
    def active(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator):
        target = one_hot_smooth(y, self.num_classes, self.smoothing)
        if not self.active or rng.random() >= self.prob:
            return x, target
        cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or rng.random() < self.switch_prob)
        alpha = self.cutmix_alpha if cutmix else self.mixup_alpha
        lam = float(rng.beta(alpha, alpha))
        flipped = x.flip(0)
        if cutmix:
            h, w = x.shape[-2:]
            cut = math.sqrt(1 - lam)  # box side fraction so that the box area is (1 - lam)
            ch, cw = int(h * cut), int(w * cut)
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
            y0, y1 = np.clip([cy - ch // 2, cy + ch // 2], 0, h)
            x0, x1 = np.clip([cx - cw // 2, cx + cw // 2], 0, w)
            x = x.clone()
            x[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)  # the area actually pasted, after clipping
        else:
            x = x * lam + flipped * (1 - lam)
        return x, target * lam + target.flip(0) * (1 - lam)


_ERASE_LOG_RATIO = (math.log(0.3), math.log(1 / 0.3))  # timm's aspect-ratio range of an erased box


def random_erasing(x: torch.Tensor, prob: float, rng: np.random.Generator,
                   area: tuple[float, float] = (0.02, 1 / 3), log_ratio=_ERASE_LOG_RATIO):
    """Erase one rectangle per selected sample with N(0, 1) noise (normalised units), in place."""
    if prob <= 0:
        return x
    b, c, h, w = x.shape
    for i in range(b):
        if rng.random() >= prob:
            continue
        for _ in range(10):  # timm's retry budget for a box that fits
            target = rng.uniform(*area) * h * w
            ratio = math.exp(rng.uniform(*log_ratio))
            eh, ew = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
            if 0 < eh < h and 0 < ew < w:
                top, left = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
                noise = torch.from_numpy(rng.standard_normal((c, eh, ew)).astype(np.float32))
                x[i, :, top:top + eh, left:left + ew] = noise.to(x.device, x.dtype)
                break
    return x
