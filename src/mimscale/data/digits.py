"""The built-in dataset ``digits``: scikit-learn's bundled handwritten digits, real scans, cut into splits.

1,797 8x8 grey images (the UCI optdigits test set: intensities 0-16, labels 0-9, about 180 per class),
read from the installed scikit-learn (nothing is downloaded), upscaled bilinearly to ``size`` px and
replicated to 3 channels; uint8 (size, size, 3).

``split="all"`` is every image in scikit-learn's order. The named splits share no image. For user seed
``seed``, each class's images are permuted by ``numpy.random.default_rng([seed, class])`` and taken
round-robin over the classes (one of each class, then the next of each, ...). This class-interleaved order
is cut into test (the first 300 images), probe (the next 300), val (the next 197) and train (the last 1,000).
So test, probe and val hold each class 30, 30 and 19-20 times, and the first ``pool`` images of a split are
as balanced as a pool can be. Another seed gives other images in every split.

Unlike ``shapes`` and ``photos``, a split cannot generate more images than it holds: a larger ``pool`` is an
error, not a silent cap.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

NUM_CLASSES = 10
CLASS_NAMES = tuple(str(d) for d in range(NUM_CLASSES))
# The order of the cut: test first, train last (the train split takes the tail, where the round-robin runs
# out of the smaller classes; its subsets are class-stratified anyway).
SPLIT_SIZES = {"test": 300, "probe": 300, "val": 197, "train": 1000}
SPLITS = ("all", *SPLIT_SIZES)


@functools.lru_cache(maxsize=4)
def digits_images(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (1797, size, size, 3), labels int64 (1797,)) in scikit-learn's order; once per process."""
    if size < 8:
        raise ValueError(f"digits size must be >= 8 px, got {size}")
    from sklearn.datasets import load_digits  # seconds to import: only when digits are used

    d = load_digits()
    small = (d.images * (255.0 / 16.0)).round().astype(np.uint8)
    big = np.stack([np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR)) for a in small])
    images = np.repeat(big[..., None], 3, axis=-1)
    images.setflags(write=False)  # cached and shared: nobody may change it in place
    return images, d.target.astype(np.int64)


def split_indices(labels: np.ndarray, seed: int, split: str) -> np.ndarray:
    """Indices (into scikit-learn's order) of ``split`` for user seed ``seed``, in the split's own order."""
    if split not in SPLITS:
        raise ValueError(f"unknown digits split {split!r}; choose from {', '.join(SPLITS)}")
    if split == "all":
        return np.arange(len(labels))
    if int(seed) < 0:
        raise ValueError(f"digits seed must be >= 0, got {seed}")
    if sum(SPLIT_SIZES.values()) != len(labels):
        raise ValueError(f"digits: expected {sum(SPLIT_SIZES.values())} images, scikit-learn has {len(labels)}")
    per_class = [np.random.default_rng([int(seed), c]).permutation(np.flatnonzero(labels == c))
                 for c in range(NUM_CLASSES)]  # fmt: skip
    order = [p[k] for k in range(max(map(len, per_class))) for p in per_class if k < len(p)]
    names = list(SPLIT_SIZES)
    start = sum(SPLIT_SIZES[n] for n in names[:names.index(split)])
    return np.asarray(order[start:start + SPLIT_SIZES[split]], dtype=np.int64)
