"""Whether two data sources hold some of the same images, from their ``describe()`` alone (nothing is listed or
decoded): the check behind the warning that an evaluation tests on images it trained on (``runner.run``, and
``study plan`` / ``study run`` before any compute), or on images its run pre-trained on.

- Folders (``folder``, ``segfolder``): the folder read (its ``train`` / ``val`` split folder when it has one)
  is the same as, or inside, the other's.
- Built-in generated sources: the same kind and settings apart from the pool sizes (a smaller pool of the same
  seed and split is a prefix of a larger one).
- Shards: the same path pattern.
"""

from __future__ import annotations

import os
from pathlib import PurePath

_FOLDER_KINDS = ("folder", "segfolder")
_POOL_KEYS = ("pool", "val_pool")  # the size of a generated pool, not which images it holds
_WHOLE = (None, "", "auto", "all")  # a split that means the folder itself


def images_folder(desc: dict) -> PurePath | None:
    """The folder a folder source reads its images from (``path``, or ``path/<split>``); None for others."""
    if desc.get("kind") not in _FOLDER_KINDS or not desc.get("path"):
        return None
    path = PurePath(os.path.realpath(os.path.expanduser(str(desc["path"]))))
    split = desc.get("split")
    return path if split in _WHOLE else path / str(split)


def _inside(a: PurePath, b: PurePath) -> bool:
    return a == b or b in a.parents


def shared_images(a: dict, b: dict) -> bool:
    """True when sources described by ``a`` and ``b`` hold some of the same images (see the module docstring)."""
    fa, fb = images_folder(a), images_folder(b)
    if fa is not None or fb is not None:
        return fa is not None and fb is not None and (_inside(fa, fb) or _inside(fb, fa))
    if a.get("kind") != b.get("kind"):
        return False
    if a.get("kind") == "shards":
        return a.get("path") == b.get("path")
    strip = (lambda d: {k: v for k, v in d.items() if k not in _POOL_KEYS})  # noqa: E731
    return strip(a) == strip(b)


def same_images_warning(train: dict, test: dict) -> str | None:
    """One line when an evaluation's test images are among its training images (its accuracy then measures
    memory, not transfer: a kNN top-1 of 0.44 where the real split gives 0.09); None when they are apart."""
    if not shared_images(train, test):
        return None
    from mimscale.evaluate.config import data_name

    return (f"train_source and test_source share images ({data_name(train, test)}): the test accuracy is "
            f"measured on training images; give a test_source apart from train_source (e.g. ROOT/val)")
