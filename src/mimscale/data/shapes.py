"""The built-in procedural dataset ``shapes`` (the demo's data).

Every image is a pure function of ``(seed, index)``: its parameters and its pixel noise come from
``numpy.random.default_rng([seed, index])``, so an image never depends on how many images are made
at once, on the process, or on ``PYTHONHASHSEED``. Rendering is vectorised over a chunk of images.

Content (at 32 px; every length scales with ``size / 32``):
- 10 classes, ``label = index % 10``: circle, square, triangle, cross, ring, striped square, star,
  ellipse, crescent, pair of dots (``CLASS_NAMES``);
- one large shape near the centre (radius 8-13 px, centre jitter +-2 px, random rotation), random
  colour with at least 0.3 contrast to the background in every channel, a weak linear shading;
- a plain background: one colour plus a weak linear gradient (``background="textured"`` adds a
  low-frequency sinusoid; the demo notes found busy backgrounds hide the class signal);
- a small occluder (square or disc, side 6-10 px) with probability ``occluder`` (0.15);
- Gaussian pixel noise, sigma ``noise`` (0.02) on the [0, 1] scale. Edges are anti-aliased.

Segmentation masks (uint8, H x W): 0 = background, ``label + 1`` (1..10) = the shape,
``SEG_OCCLUDER`` (11) = occluder pixels in front of anything; ``SEG_NUM_CLASSES`` = 12 values.

Splits: split ``s`` of seed ``seed`` uses generator seed ``seed + SPLIT_SEED_OFFSETS[s]``; the ids
(``"shapes:<generator seed>:<index>"``) of different splits are therefore disjoint by construction
(as long as two *user* seeds are not exactly an offset apart).
"""

from __future__ import annotations

import math

import numpy as np

CLASS_NAMES = (
    "circle", "square", "triangle", "cross", "ring", "striped_square", "star", "ellipse", "crescent", "dots",
)  # fmt: skip
NUM_CLASSES = len(CLASS_NAMES)
SEG_BACKGROUND = 0
SEG_OCCLUDER = NUM_CLASSES + 1
SEG_NUM_CLASSES = NUM_CLASSES + 2
SPLIT_SEED_OFFSETS = {"train": 0, "val": 1_000_003, "probe": 2_000_006, "test": 3_000_009}
_NUM_UNIFORMS = 28  # per-image parameter vector; fixed length so the noise stream never shifts


def split_seed(seed: int, split: str = "train") -> int:
    """Generator seed of ``split`` ("train", "val", "probe", "test") for user seed ``seed``."""
    if split not in SPLIT_SEED_OFFSETS:
        raise ValueError(f"unknown shapes split {split!r}; choose from {sorted(SPLIT_SEED_OFFSETS)}")
    return int(seed) + SPLIT_SEED_OFFSETS[split]


# --- signed-distance-like functions of unit coordinates (u, v): > 0 inside, in units of radius ---
def _circle(u, v):
    return 1.0 - np.hypot(u, v)


def _square(u, v):
    return 0.78 - np.maximum(np.abs(u), np.abs(v))


def _triangle(u, v):
    # equilateral, circumradius 1.1: three half-planes at distance 0.55 from the centre
    d = np.maximum(-v, 0.8660254 * u + 0.5 * v)
    return 0.55 - np.maximum(d, -0.8660254 * u + 0.5 * v)


def _cross(u, v):
    au, av = np.abs(u), np.abs(v)
    return np.maximum(np.minimum(0.3 - au, 0.95 - av), np.minimum(0.3 - av, 0.95 - au))


def _ring(u, v):
    rho = np.hypot(u, v)
    return np.minimum(1.0 - rho, rho - 0.55)


def _star(u, v):
    rho = np.hypot(u, v)
    phase = (np.arctan2(v, u) * (5.0 / (2.0 * math.pi))) % 1.0
    tip = np.abs(2.0 * phase - 1.0)  # 1 at the five tips, 0 between them
    return (0.45 + 0.62 * tip) - rho


def _ellipse(u, v):
    return 0.55 * (1.0 - np.hypot(u, v / 0.55))


def _crescent(u, v):
    return np.minimum(1.0 - np.hypot(u, v), np.hypot(u - 0.45, v) - 0.8)


def _dots(u, v):
    return 0.42 - np.minimum(np.hypot(u - 0.55, v), np.hypot(u + 0.55, v))


_SDF = (_circle, _square, _triangle, _cross, _ring, _square, _star, _ellipse, _crescent, _dots)
_STRIPED = CLASS_NAMES.index("striped_square")


def _draw(seed: int, start: int, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image uniforms (n, _NUM_UNIFORMS) and noise (n, size, size, 3), each image its own stream."""
    params = np.empty((n, _NUM_UNIFORMS), dtype=np.float64)
    noise = np.empty((n, size, size, 3), dtype=np.float32)
    for k in range(n):
        rng = np.random.default_rng([int(seed), int(start + k)])
        params[k] = rng.random(_NUM_UNIFORMS)
        noise[k] = rng.standard_normal((size, size, 3), dtype=np.float32)
    return params, noise


def _render(p, noise, labels, size, noise_sigma, occluder_p, background):
    n = len(labels)
    s = size / 32.0
    col = lambda a: a[:, None, None].astype(np.float32)  # noqa: E731  (n,) -> (n, 1, 1)
    coords = np.arange(size, dtype=np.float32) + 0.5
    xx, yy = coords[None, None, :], coords[None, :, None]

    bg = 0.1 + 0.8 * p[:, 0:3]
    fg = (bg + 0.3 + 0.4 * p[:, 5:8]) % 1.0
    radius = (8.0 + 5.0 * p[:, 8]) * s
    cx = size / 2 + (p[:, 9] - 0.5) * 4.0 * s
    cy = size / 2 + (p[:, 10] - 0.5) * 4.0 * s
    rot = 2.0 * math.pi * p[:, 11]

    dx, dy = xx - col(cx), yy - col(cy)
    cos, sin, r = col(np.cos(rot)), col(np.sin(rot)), col(radius)
    u = (dx * cos + dy * sin) / r
    v = (dy * cos - dx * sin) / r

    sdf = np.empty((n, size, size), dtype=np.float32)
    for k, fn in enumerate(_SDF):
        sel = np.flatnonzero(labels == k)
        if len(sel):
            sdf[sel] = fn(u[sel], v[sel])
    alpha = np.clip(0.5 + sdf * r, 0.0, 1.0)[..., None]  # sdf is in radii; r converts to pixels

    # background: colour + weak gradient (+ optional low-frequency texture)
    ga = 2.0 * math.pi * p[:, 4]
    grad = ((xx - size / 2) * col(np.cos(ga)) + (yy - size / 2) * col(np.sin(ga))) / size
    img = bg[:, None, None, :].astype(np.float32) + (col(0.12 * p[:, 3]) * grad)[..., None]
    if background == "textured":
        fx, fy = col(1.0 + 3.0 * p[:, 24]), col(1.0 + 3.0 * p[:, 25])
        wave = np.sin(2.0 * math.pi * (xx * fx + yy * fy) / size + col(2.0 * math.pi * p[:, 23]))
        img = img + (0.08 * wave)[..., None]

    # foreground colour with shading; stripes for the striped square
    sa = 2.0 * math.pi * p[:, 13]
    shade = col(0.12 * p[:, 12]) * (dx * col(np.cos(sa)) + dy * col(np.sin(sa))) / r
    fg_img = fg[:, None, None, :].astype(np.float32) + shade[..., None]
    striped = np.flatnonzero(labels == _STRIPED)
    if len(striped):
        f = fg[striped]
        other = np.where(f.mean(1, keepdims=True) > 0.5, f * 0.35, f + (1.0 - f) * 0.65)
        period = col((3.0 + 2.0 * p[striped, 14]) * s)
        on = (np.floor(u[striped] * r[striped] / period) % 2 == 0)[..., None]
        fg_img[striped] = np.where(on, fg_img[striped], other[:, None, None, :].astype(np.float32))
    img = img * (1.0 - alpha) + fg_img * alpha

    # occluder: small square or disc somewhere over the shape
    has = p[:, 15] < occluder_p
    ox = cx + (p[:, 16] - 0.5) * 1.8 * radius
    oy = cy + (p[:, 17] - 0.5) * 1.8 * radius
    half = col((3.0 + 2.0 * p[:, 18]) * s)
    odx, ody = np.abs(xx - col(ox)), np.abs(yy - col(oy))
    osdf = np.where(col(p[:, 19]) < 0.5, half - np.maximum(odx, ody), half - np.hypot(odx, ody))
    oalpha = (np.clip(0.5 + osdf, 0.0, 1.0) * col(has.astype(np.float32)))[..., None]
    img = img * (1.0 - oalpha) + p[:, None, None, 20:23].astype(np.float32) * oalpha

    img += noise_sigma * noise
    images = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    seg = np.where(sdf >= 0, (labels[:, None, None] + 1), SEG_BACKGROUND).astype(np.uint8)
    seg[oalpha[..., 0] >= 0.5] = SEG_OCCLUDER
    return images, seg


def shapes_array(
    seed: int,
    n: int,
    size: int = 32,
    *,
    start: int = 0,
    noise: float = 0.02,
    occluder: float = 0.15,
    background: str = "plain",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images ``start .. start+n-1`` of generator seed ``seed``.

    Returns ``(images uint8 (n, size, size, 3), labels int64 (n,), segmentation uint8 (n, size, size))``.
    ``seed`` is the generator seed: use ``split_seed(seed, "val")`` for the held-out split.
    """
    if size < 8:
        raise ValueError(f"shapes size must be >= 8 px, got {size}")
    if background not in ("plain", "textured"):
        raise ValueError(f"shapes background must be 'plain' or 'textured', got {background!r}")
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    segs = np.empty((n, size, size), dtype=np.uint8)
    labels = (np.arange(start, start + n, dtype=np.int64) % NUM_CLASSES).astype(np.int64)
    chunk = max(1, (1 << 18) // (size * size))  # ~1 MB per float plane: cache-friendly
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        p, z = _draw(seed, start + lo, hi - lo, size)
        images[lo:hi], segs[lo:hi] = _render(p, z, labels[lo:hi], size, noise, occluder, background)
    return images, labels, segs
