"""The built-in dataset ``photos``: square crops of ten real photographs that installed packages ship.

The photographs come with scikit-image (``skimage/data/``) and scikit-learn
(``sklearn/datasets/images/``) and are read from the installed packages: nothing is downloaded. They
are the 10 classes, ``label = index % 10`` as in ``shapes`` (``CLASS_NAMES``, alphabetical): five
colour photos (astronaut, chelsea the cat, coffee cup, dahlia flower, immunohistochemistry slide) and
five grey ones (brick wall, cameraman, Greek coins, grass, gravel; replicated to 3 channels). Photos
that are mostly one flat colour (hubble_deep_field, retina's black surround, moon) or whose licence
the package does not state (motorcycle) are left out.

Splits share no pixels: every photo is cut into a ``GRID x GRID`` grid of tiles and each tile belongs
to one split (``TILE_LAYOUT``): 10 of 16 tiles train, two each val, probe and test. Each held-out split
has one tile of the central 2 x 2 block (where photographers put the subject) and one on a side, so
each sees a different part of every photo; probe and test are point reflections of each other.

Image ``index`` of split ``split`` and user seed ``seed`` is a pure function of those three: its draws
come from ``numpy.random.default_rng([split_seed(seed, split), index])`` (``shapes.split_seed``, the
same offsets as ``shapes``): a tile of its photo in that split, a square of side 1/2 to 1 of the
tile's shorter side at a random place inside the tile, a horizontal flip with probability 1/2. The
square is resized to ``size`` px (PIL bicubic, antialiased when shrinking); uint8 (size, size, 3).
The photos are 300-640 px, tiles 75-160 px, so sizes above about 64 px upsample most crops.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np
from PIL import Image

from .shapes import SPLIT_SEED_OFFSETS

# (class name, package, path inside the package); the class index is the position in this tuple.
PHOTOS = (
    ("astronaut", "skimage", "data/astronaut.png"),
    ("brick", "skimage", "data/brick.png"),
    ("camera", "skimage", "data/camera.png"),
    ("chelsea", "skimage", "data/chelsea.png"),
    ("coffee", "skimage", "data/coffee.png"),
    ("coins", "skimage", "data/coins.png"),
    ("flower", "sklearn", "datasets/images/flower.jpg"),
    ("grass", "skimage", "data/grass.png"),
    ("gravel", "skimage", "data/gravel.png"),
    ("ihc", "skimage", "data/ihc.png"),
)
CLASS_NAMES = tuple(name for name, _, _ in PHOTOS)
NUM_CLASSES = len(CLASS_NAMES)
SPLITS = tuple(SPLIT_SEED_OFFSETS)  # train, val, probe, test
GRID = 4
# Row-major tile -> split: T train, V val, P probe, E test (evaluation).
TILE_LAYOUT = ("TTTT",
               "TVPE",
               "PETT",
               "TTVT")  # fmt: skip
_LAYOUT_CODES = {"T": "train", "V": "val", "P": "probe", "E": "test"}
_NUM_UNIFORMS = 5  # tile, side, x, y, flip: fixed length so a stream never shifts


def split_seed(seed: int, split: str = "train") -> int:
    """Generator seed of ``split`` for user seed ``seed`` (the offsets of ``shapes``)."""
    check_split(split)
    return int(seed) + SPLIT_SEED_OFFSETS[split]


def check_split(split: str) -> None:
    if split not in SPLIT_SEED_OFFSETS:
        raise ValueError(f"unknown photos split {split!r}; choose from {', '.join(SPLITS)}")


def split_tiles(split: str) -> tuple[tuple[int, int], ...]:
    """The (row, column) grid tiles of ``split``, row-major; the same for every photo."""
    check_split(split)
    return tuple((r, c) for r, row in enumerate(TILE_LAYOUT) for c, code in enumerate(row)
                 if _LAYOUT_CODES[code] == split)  # fmt: skip


def tile_box(height: int, width: int, row: int, col: int) -> tuple[int, int, int, int]:
    """Pixel box (left, top, right, bottom) of tile (row, col) of a height x width photo.

    Tiles are ``height // GRID`` x ``width // GRID``; the few pixels left over at the right and bottom
    edges belong to no tile (never drawn), which keeps every tile of a photo the same size."""
    th, tw = height // GRID, width // GRID
    return col * tw, row * th, (col + 1) * tw, (row + 1) * th


def _package_dir(package: str) -> str:
    # find_spec locates the installed package without importing it (importing skimage or sklearn
    # costs seconds; only their data files are needed).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the photos dataset needs the package {package!r} (pip install scikit-image "
                                f"scikit-learn)")  # fmt: skip
    return list(spec.submodule_search_locations)[0]


def photo_path(k: int) -> str:
    _, package, rel = PHOTOS[k]
    return os.path.join(_package_dir(package), *rel.split("/"))


@functools.lru_cache(maxsize=1)
def load_photos() -> tuple[Image.Image, ...]:
    """The 10 photos as decoded RGB PIL images, in class order; decoded once per process (loader
    workers forked after the first call share them)."""
    photos = []
    for k in range(NUM_CLASSES):
        with Image.open(photo_path(k)) as im:
            photos.append(im.convert("RGB"))  # grey photos become 3 equal channels
    return tuple(photos)


def crop_params(seed: int, split: str, start: int, n: int) -> list[tuple[int, tuple[int, int], tuple, bool]]:
    """Per image ``start .. start+n-1``: (label, tile (row, col), crop box (l, t, r, b), flip)."""
    gen_seed = split_seed(seed, split)
    tiles = split_tiles(split)
    dims = [(im.height, im.width) for im in load_photos()]
    out = []
    for i in range(start, start + n):
        u = np.random.default_rng([gen_seed, i]).random(_NUM_UNIFORMS)
        label = i % NUM_CLASSES
        tile = tiles[int(u[0] * len(tiles))]
        x0, y0, x1, y1 = tile_box(*dims[label], *tile)
        side = max(1, int(min(x1 - x0, y1 - y0) * (0.5 + 0.5 * u[1])))
        left = x0 + int(u[2] * (x1 - x0 - side + 1))
        top = y0 + int(u[3] * (y1 - y0 - side + 1))
        out.append((label, tile, (left, top, left + side, top + side), bool(u[4] < 0.5)))
    return out


def photos_array(seed: int, split: str, n: int, size: int = 32, *,
                 start: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Images ``start .. start+n-1`` of ``split`` for user seed ``seed``.

    Returns ``(images uint8 (n, size, size, 3), labels int64 (n,))``.
    """
    if size < 8:
        raise ValueError(f"photos size must be >= 8 px, got {size}")
    if n < 0 or start < 0:
        raise ValueError(f"photos start and n must be >= 0, got start={start}, n={n}")
    photos = load_photos()
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    for k, (label, _, box, flip) in enumerate(crop_params(seed, split, start, n)):
        # Crop first, then resize: resizing with ``box=`` would let the bicubic filter read pixels
        # just outside the box, i.e. from a neighbouring tile that may belong to another split.
        img = photos[label].crop(box).resize((size, size), Image.BICUBIC)
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        images[k] = np.asarray(img)
        labels[k] = label
    return images, labels
