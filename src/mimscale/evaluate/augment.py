"""Fine-tuning augmentation on tensors, without torchvision (docs/METHOD.md, Fine-tuning and other evaluations).

- ``rand_augment``: the timm ``rand-m9-mstd0.5-inc1`` policy (the "increasing" op set: each op gets
  stronger with the magnitude), on one (C, H, W) float image in [0, 1].
- ``MixupCutmix``: batch mixup (alpha 0.8) or cutmix (alpha 1.0), one of them per batch with
  probability 1/2 each, with label-smoothed soft targets.
- ``random_erasing``: timm's "pixel" mode, per sample, on the normalised batch.

Every random draw comes from a ``numpy.random.Generator`` the caller seeds, so augmentation is a
function of (seed, epoch, sample index), not of worker scheduling.

timm runs RandAugment on a PIL image: each op reads and writes 8-bit values with PIL's own rounding
(mostly truncation). The ops here do the same integer arithmetic on tensors of 0..255 levels, so each
one gives exactly the bytes PIL gives (tests/evaluate/test_augment_parity.py compares them).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from mimscale.data.transforms import IMAGENET_MEAN

_LEVEL_DENOM = 10.0  # magnitudes are on timm's 0..10 scale (and clipped to it)
# timm's create_transform: ``img_mean`` as 8-bit ints fills the corners the geometric ops uncover.
_FILL = tuple(min(255, round(255 * m)) for m in IMAGENET_MEAN)  # (124, 116, 104)
_FILL_OTHER = 128  # timm's default fill; for images that are not RGB


def _levels(img: torch.Tensor) -> torch.Tensor:
    """A [0, 1] image as int64 levels 0..255 (the caller's images are uint8 / 255: exact)."""
    return (img * 255).round().clamp(0, 255).long()


def _lut(q: torch.Tensor, luts: list[np.ndarray]) -> torch.Tensor:
    """Per-channel 256-entry lookup (PIL ``Image.point``; entries are clipped to 0..255 like PIL's)."""
    tables = torch.from_numpy(np.clip(np.stack(luts), 0, 255).astype(np.int64)).to(q.device)
    return torch.stack([table[ch] for table, ch in zip(tables, q)])


def _grey(q: torch.Tensor) -> torch.Tensor:
    """PIL's ``convert("L")``: fixed-point ITU-R 601-2 luma, rounded; (H, W)."""
    if q.shape[0] == 3:
        return (q[0] * 19595 + q[1] * 38470 + q[2] * 7471 + 0x8000) >> 16
    return q.float().mean(0).round().long() if q.shape[0] != 1 else q[0]


def _blend(degenerate: torch.Tensor, q: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL ``Image.blend(degenerate, image, factor)`` (what ImageEnhance does): float32 arithmetic,
    truncated to 8 bits, clipped when the factor extrapolates."""
    if factor == 0.0:
        return degenerate.expand_as(q).clone()
    if factor == 1.0:
        return q
    d = degenerate.float()
    out = d + (q.float() - d) * torch.tensor(factor, dtype=torch.float32)  # two roundings, as PIL's C
    return out.clamp(0, 255).long()


def _autocontrast(q: torch.Tensor) -> torch.Tensor:
    """PIL ``ImageOps.autocontrast`` (cutoff 0): per channel, the range [lo, hi] stretched to 0..255."""
    luts = []
    for ch in q:
        lo, hi = int(ch.min()), int(ch.max())
        if hi <= lo:
            luts.append(np.arange(256))
            continue
        scale = 255.0 / (hi - lo)
        offset = -lo * scale
        luts.append(np.trunc(np.arange(256, dtype=np.float64) * scale + offset))  # PIL: int(ix * scale + offset)
    return _lut(q, luts)


def _equalize(q: torch.Tensor) -> torch.Tensor:
    """PIL ``ImageOps.equalize``: per channel, a lookup from the cumulative histogram."""
    luts = []
    for ch in q:
        hist = np.bincount(ch.flatten().cpu().numpy(), minlength=256)
        nonzero = hist[hist > 0]
        step = (int(nonzero.sum()) - int(nonzero[-1])) // 255 if len(nonzero) > 1 else 0
        if step == 0:
            luts.append(np.arange(256))
            continue
        before = np.concatenate([[0], np.cumsum(hist)[:-1]])  # pixels below each level
        luts.append((step // 2 + before) // step)
    return _lut(q, luts)


def _smooth(q: torch.Tensor) -> torch.Tensor:
    """PIL ``ImageFilter.SMOOTH`` (3x3 kernel 1 1 1 / 1 5 1 / 1 1 1 over 13, rounded half up); the
    one-pixel border keeps its values, as PIL's 3x3 filter does."""
    if min(q.shape[1:]) < 3:  # no interior pixel: PIL returns the image unchanged
        return q.clone()
    k = torch.tensor([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=torch.float64, device=q.device)
    c = q.shape[0]
    s = F.conv2d(q[None].double(), k.expand(c, 1, 3, 3), groups=c)[0].round().long()  # exact integer sums
    out = q.clone()
    out[:, 1:-1, 1:-1] = (2 * s + 13) // 26  # floor(s / 13 + 1/2); s / 13 is never a half-integer
    return out


def _cubic(v1, v2, v3, v4, d):
    """PIL's transform bicubic (Geometry.c: cubic convolution with a = -1) in its operation order:
    p1 + d (p2 + d (p3 + d p4)); rewritten in place (a + (-b) is a - b exactly). Consumes v1, v3."""
    p3 = (v1 - v2).mul_(2).add_(v3).sub_(v4)  # 2 (v1 - v2) + v3 - v4
    p4 = (v2 - v1).sub_(v3).add_(v4)  # -v1 + v2 - v3 + v4
    p2 = v3.sub_(v1)  # -v1 + v3
    return p4.mul_(d).add_(p3).mul_(d).add_(p2).mul_(d).add_(v2)


def _sample(flat: torch.Tensor, h: int, w: int, xin: torch.Tensor, yin: torch.Tensor, mode: str) -> torch.Tensor:
    """PIL's bilinear / bicubic filter at input points (xin, yin) (pixel units, inside the image):
    neighbours beyond the edge repeat the edge; float64 like PIL's C."""
    xin, yin = xin - 0.5, yin - 0.5
    x0, y0 = xin.floor(), yin.floor()
    dx, dy = xin - x0, yin - y0
    x0, y0 = x0.long(), y0.long()
    offsets = (0, 1) if mode == "bilinear" else (-1, 0, 1, 2)
    cols = {k: (x0 + k).clamp_(0, w - 1) for k in offsets}
    rows = {k: (y0 + k).clamp_(0, h - 1).mul_(w) for k in offsets}

    def at(ky, kx):
        return flat[:, rows[ky] + cols[kx]]

    if mode == "bilinear":
        def row(ky):
            left = at(ky, 0)
            return (at(ky, 1) - left).mul_(dx).add_(left)  # a + (b - a) d
        v1 = row(0)
        return (row(1) - v1).mul_(dy).add_(v1)
    return _cubic(*(_cubic(at(ky, -1), at(ky, 0), at(ky, 1), at(ky, 2), dx) for ky in offsets), dy)


_CHUNK_ROWS = 32  # output rows per pass: the float64 temporaries stay in cache (2-3x faster at 224 px)


def _transform(q: torch.Tensor, matrix: tuple, mode: str) -> torch.Tensor:
    """PIL ``Image.transform(size, AFFINE, matrix, resample, fillcolor)``: output pixel centre (x, y)
    reads the input at (a x + b y + c, d x + e y + f), pixel units. A point outside the input gets the
    fill colour; inside, neighbours beyond the edge repeat the edge; the value is truncated to 8 bits
    (float64, PIL's operation order, so the bytes match)."""
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(f"interpolation must be bilinear or bicubic, got {mode!r}")
    c, h, w = q.shape
    a, b, c0, d, e, f = (float(v) for v in matrix)
    flat = q.double().view(c, h * w)
    xs = torch.arange(w, dtype=torch.float64, device=q.device).view(1, w) + 0.5
    fill = torch.tensor(_FILL if c == 3 else [_FILL_OTHER] * c, device=q.device).view(c, 1, 1)
    out = torch.empty_like(q)
    for top in range(0, h, _CHUNK_ROWS):
        ys = torch.arange(top, min(h, top + _CHUNK_ROWS), dtype=torch.float64, device=q.device).view(-1, 1) + 0.5
        xin = a * xs + b * ys + c0
        yin = d * xs + e * ys + f
        inside = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
        v = _sample(flat, h, w, xin, yin, mode).clamp_(0, 255).long()  # truncation, as PIL's (UINT8) cast
        out[:, top:top + len(ys)] = torch.where(inside, v, fill)
    return out


def _rotate(q: torch.Tensor, degrees: float, mode: str) -> torch.Tensor:
    """PIL ``Image.rotate(degrees)`` (counter-clockwise about the image centre, same size)."""
    angle = degrees % 360.0
    if angle == 0:
        return q
    h, w = q.shape[1:]
    cx, cy = w / 2, h / 2
    rad = -math.radians(angle)
    a, b = round(math.cos(rad), 15), round(math.sin(rad), 15)
    d, e = round(-math.sin(rad), 15), round(math.cos(rad), 15)
    c0 = a * -cx + b * -cy + 0.0 + cx  # PIL's order of operations, for the same matrix
    f = d * -cx + e * -cy + 0.0 + cy
    return _transform(q, (a, b, c0, d, e, f), mode)


def _signed(v: float, rng: np.random.Generator) -> float:
    return -v if rng.random() < 0.5 else v  # timm negates with probability 1/2 too


def _apply_levels(op: str, q: torch.Tensor, m: float, rng, mode: str) -> torch.Tensor:
    """One op at magnitude ``m`` in [0, 10] on 8-bit levels; timm's level -> argument functions for the
    increasing set (``_RAND_INCREASING_TRANSFORMS``) and timm's op on PIL."""
    if op == "AutoContrast":
        return _autocontrast(q)
    if op == "Equalize":
        return _equalize(q)
    if op == "Invert":
        return 255 - q
    if op == "Rotate":  # +-30 degrees at level 10
        return _rotate(q, _signed(m / _LEVEL_DENOM * 30.0, rng), mode)
    if op == "ShearX":  # +-0.3 at level 10, about the top-left corner as PIL's matrix has it
        return _transform(q, (1, _signed(m / _LEVEL_DENOM * 0.3, rng), 0, 0, 1, 0), mode)
    if op == "ShearY":
        return _transform(q, (1, 0, 0, _signed(m / _LEVEL_DENOM * 0.3, rng), 1, 0), mode)
    if op == "TranslateXRel":  # +-0.45 of the width at level 10
        return _transform(q, (1, 0, _signed(m / _LEVEL_DENOM * 0.45, rng) * q.shape[2], 0, 1, 0), mode)
    if op == "TranslateYRel":
        return _transform(q, (1, 0, 0, 0, 1, _signed(m / _LEVEL_DENOM * 0.45, rng) * q.shape[1]), mode)
    if op == "PosterizeIncreasing":  # keep 4 .. 0 bits
        bits = 4 - int(m / _LEVEL_DENOM * 4)
        return q if bits >= 8 else q & (~(2 ** (8 - bits) - 1) & 0xFF)
    if op == "SolarizeIncreasing":  # invert the levels >= 256 .. 0
        thresh = 256 - int(m / _LEVEL_DENOM * 256)
        return torch.where(q < thresh, q, 255 - q)
    if op == "SolarizeAdd":  # add 0 .. 110 to the levels below 128
        add = int(m / _LEVEL_DENOM * 110)
        return torch.where(q < 128, (q + add).clamp(max=255), q)
    if op not in ("ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"):
        raise ValueError(f"unknown RandAugment op {op}")
    factor = max(0.1, 1.0 + _signed(m / _LEVEL_DENOM * 0.9, rng))  # 1 = identity; 0.1 .. 1.9
    if op == "ColorIncreasing":
        return _blend(_grey(q).expand_as(q), q, factor)
    if op == "ContrastIncreasing":
        grey = _grey(q)
        mean = int(int(grey.sum()) / grey.numel() + 0.5)  # PIL: int(ImageStat mean of the "L" image + 0.5)
        return _blend(torch.full_like(q, mean), q, factor)
    if op == "BrightnessIncreasing":
        return _blend(torch.zeros_like(q), q, factor)
    return _blend(_smooth(q), q, factor)  # SharpnessIncreasing


def _apply(op: str, img: torch.Tensor, m: float, rng: np.random.Generator, mode: str = "bilinear") -> torch.Tensor:
    """One op at magnitude ``m`` on a [0, 1] image (8-bit values in, 8-bit values out)."""
    return (_apply_levels(op, _levels(img), m, rng, mode).float() / 255).to(img.dtype)


OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
       "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
       "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


def rand_augment(img: torch.Tensor, n: int, m: float, mstd: float, rng: np.random.Generator,
                 prob: float = 0.5, mode: str = "bilinear") -> torch.Tensor:
    """``n`` ops drawn with replacement, each applied with probability ``prob`` at magnitude
    N(m, mstd) clipped to [0, 10] (timm's defaults for ``rand-m{m}-mstd{mstd}-inc1``); ``mode`` is the
    geometric ops' interpolation (timm's ``interpolation`` hparam). ``img`` is [0, 1] with 8-bit values."""
    if n <= 0:
        return img
    q = _levels(img)
    for op in rng.choice(OPS, size=n, replace=True):
        if rng.random() > prob:
            continue
        mag = float(np.clip(rng.normal(m, mstd) if mstd > 0 else m, 0, _LEVEL_DENOM))  # timm clips either way
        q = _apply_levels(str(op), q, mag, rng, mode)
    return (q.float() / 255).to(img.dtype)


def one_hot_smooth(y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    off = smoothing / num_classes
    out = torch.full((y.shape[0], num_classes), off, device=y.device)
    return out.scatter_(1, y.view(-1, 1), 1.0 - smoothing + off)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def cutmix_box(shape, lam: float, rng: np.random.Generator) -> tuple[tuple[int, int, int, int], float]:
    """timm's ``rand_bbox`` and lambda correction: a box of sides int(H sqrt(1 - lam)) x int(W sqrt(1 - lam))
    centred on a uniform pixel (row drawn first), clipped to the image; returns ((y0, y1, x0, x1), lam) with
    lam = 1 - clipped box area / image area (the share of the image that stays)."""
    h, w = shape[-2:]
    cut = math.sqrt(1 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = (int(v) for v in np.clip([cy - ch // 2, cy + ch // 2], 0, h))
    x0, x1 = (int(v) for v in np.clip([cx - cw // 2, cx + cw // 2], 0, w))
    return (y0, y1, x0, x1), 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)


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
            (y0, y1, x0, x1), lam = cutmix_box(x.shape, lam, rng)
            x = x.clone()
            x[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
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
        if rng.random() > prob:  # timm erases when its draw is <= the probability
            continue
        for _ in range(10):  # timm's retry budget for a box that fits
            target = rng.uniform(*area) * h * w
            ratio = math.exp(rng.uniform(*log_ratio))
            eh, ew = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
            if eh < h and ew < w:  # as timm: a box rounded to zero rows or columns ends the tries, erasing nothing
                top, left = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
                noise = torch.from_numpy(rng.standard_normal((c, eh, ew)).astype(np.float32))
                x[i, :, top:top + eh, left:left + ew] = noise.to(x.device, x.dtype)
                break
    return x
