"""Image sources behind one interface, and ``build_source(spec)``.

A map-style source has:
- ``len(source)``, ``ids`` (stable string ids, unique), ``labels()`` (int64 array or None),
  ``label(i)``, ``num_classes`` (0 when unlabelled);
- ``load(i) -> PIL.Image`` (may be lazy: a file source returns the opened, not yet decoded file, so
  a transform can use the JPEG draft mode; decoding errors surface then); in-memory sources also
  have ``load_array(i) -> uint8 (H, W, 3)``, the fast path;
- ``describe() -> dict``: JSON-able; ``build_source(source.describe())`` rebuilds the same source;
- ``validation()``: the source's own held-out split (a Source), or None when it has none;
- ``skipped_at_scan``: relative paths of entries left out when the source was listed (a folder's
  symlink loops, non-UTF-8 names, ...; see ``FolderSource``), empty for the other sources.

Specs: ``"shapes"``, ``"shapes:size=32,pool=1000,seed=0"``, ``{"kind": "shapes", "size": 32}``,
``"photos"``, ``"photos:size=32,pool=1000,seed=0,val_pool=1000,split=train"``, ``"folder:/path"`` or a
plain existing directory, ``"shards:/path/train-{000..009}.tar"`` or a path ending in ``.tar``,
``"digits"``, ``"digits:size=32,pool=1000,seed=0,val_pool=197,split=train"``, ``"sample_images"``,
``"sample_images:tile=64"``, ``"segfolder:/path"`` (image / mask pairs for segmentation).

One module for the source protocol and every kind behind ``build_source`` (about 420 lines); folder listing is
``data/scan.py``, web-dataset shards ``data/shards.py``, the photos' tiling ``data/photos.py``, the digits'
splits ``data/digits.py``, segmentation folders ``data/segfolder.py``.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from mimscale.errors import DataError, UserError

from . import digits, photos
from .scan import (
    dir_entries,
    has_images,
    is_dir_entry,
    is_split_layout,
    is_utf8,
    link_error,
    list_images,
    path_contains,
    printable,
    skip_note,
)
from .shapes import NUM_CLASSES, shapes_array, split_seed

log = logging.getLogger("mimscale.data")


@runtime_checkable
class Source(Protocol):
    ids: list[str]
    num_classes: int

    def __len__(self) -> int: ...
    def load(self, i: int) -> Image.Image: ...
    def label(self, i: int) -> int | None: ...
    def labels(self) -> np.ndarray | None: ...
    def describe(self) -> dict: ...
    def validation(self) -> Source | None: ...


class _Labelled:
    """Label access shared by the map-style sources; ``_labels`` is an int64 array or None (unlabelled)."""

    _labels: np.ndarray | None

    def label(self, i: int) -> int | None:
        return None if self._labels is None else int(self._labels[i])

    def labels(self) -> np.ndarray | None:
        return self._labels


class ArraySource(_Labelled):
    """Images held in memory as one uint8 array (N, H, W, 3); the base of the built-in sources."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None, ids: list[str], description: dict):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise DataError(f"in-memory images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        if len(images) == 0:
            raise DataError(f"data source {description.get('kind')} is empty")
        self.images = images
        self._labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.ids = list(ids)
        self.num_classes = 0 if labels is None else int(self._labels.max()) + 1
        self._description = dict(description)
        self.skipped_at_scan: list[str] = []  # nothing to list: in memory
        self.skip_reasons: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.images)

    def load_array(self, i: int) -> np.ndarray:
        return self.images[i]

    def load(self, i: int) -> Image.Image:
        return Image.fromarray(self.load_array(i))

    def describe(self) -> dict:
        return dict(self._description)

    def validation(self) -> Source | None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._description}, n={len(self)})"


class _SplitSource(ArraySource):
    """A built-in source with splits (shapes, photos, digits): images are a function of (seed, split, index),
    and its held-out split is the same source at ``split="val"`` with ``val_pool`` images, built once."""

    def __len__(self) -> int:
        return len(self.ids)

    def validation(self) -> Source | None:
        if self._description.get("split") != "train":
            return None
        if getattr(self, "_val", None) is None:
            d = self.describe()
            d.update(pool=d["val_pool"], split="val")
            d.pop("kind")
            self._val = type(self)(**d)
        return self._val


class ShapesSource(_SplitSource):
    """The procedural ``shapes`` dataset (see ``mimscale.data.shapes``).

    ``pool`` images of generator seed ``split_seed(seed, split)``, generated at construction and held
    in memory (fork-shared by loader workers) when images + masks fit in ``CACHE_BYTES`` (512 MiB;
    e.g. 1,000 images at 192 px take 144 MiB), else generated per access (about 4 ms per 192 px
    image). ``validation()`` is the "val" split of the same seed with ``val_pool`` images.
    """

    CACHE_BYTES = 512 << 20

    def __init__(self, size=32, pool=1000, seed=0, val_pool=1000, noise=0.02, occluder=0.15,
                 background="plain", split="train"):  # fmt: skip
        if int(pool) < 1:
            raise DataError(f"shapes pool must be >= 1, got {pool}")
        pool, size = int(pool), int(size)
        lazy = pool * size * size * 4 > self.CACHE_BYTES
        try:
            gen_seed = split_seed(int(seed), split)
            self._gen = dict(seed=gen_seed, size=size, noise=float(noise), occluder=float(occluder),
                             background=background)  # fmt: skip
            images, labels, seg = shapes_array(n=1 if lazy else pool, **self._gen)
        except ValueError as e:
            raise DataError(str(e)) from None
        desc = dict(kind="shapes", size=size, pool=pool, seed=int(seed), val_pool=int(val_pool),
                    noise=float(noise), occluder=float(occluder), background=background, split=split)  # fmt: skip
        ids = [f"shapes:{gen_seed}:{i}" for i in range(pool)]
        labels = np.arange(pool, dtype=np.int64) % NUM_CLASSES
        super().__init__(images, labels, ids, desc)
        self.num_classes = NUM_CLASSES
        self.seg = seg
        if lazy:
            self.images = self.seg = None

    def _one(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        images, _, seg = shapes_array(n=1, start=int(i), **self._gen)
        return images[0], seg[0]

    def load_array(self, i: int) -> np.ndarray:
        return self._one(i)[0] if self.images is None else self.images[i]

    def segmentation(self, i: int) -> np.ndarray:
        """(H, W) uint8: 0 background, label + 1 for the shape, 11 for the occluder."""
        return self._one(i)[1] if self.seg is None else self.seg[i]



class PhotosSource(_SplitSource):
    """The built-in ``photos`` dataset: crops of 10 photographs shipped by scikit-image and scikit-learn
    (see ``mimscale.data.photos``), label = photo.

    The spec parameters mean what they mean for ``shapes``: ``pool`` images of ``split`` ("train",
    "val", "probe", "test") of user seed ``seed``, held in memory when they fit in ``CACHE_BYTES``
    (512 MiB), else cropped per access (about 0.1 ms per 32 px image). ``validation()`` is the "val"
    split of the same seed with ``val_pool`` images. The splits come from disjoint tiles of each photo.
    """

    CACHE_BYTES = 512 << 20

    def __init__(self, size=32, pool=1000, seed=0, val_pool=1000, split="train"):
        if int(pool) < 1:
            raise DataError(f"photos pool must be >= 1, got {pool}")
        pool, size, seed = int(pool), int(size), int(seed)
        lazy = pool * size * size * 3 > self.CACHE_BYTES
        self._gen = dict(seed=seed, split=split, size=size)
        try:
            images, _ = photos.photos_array(n=1 if lazy else pool, **self._gen)
        except (ValueError, OSError) as e:  # bad split / size / seed; a photo file missing or unreadable
            raise DataError(str(e)) from None
        desc = dict(kind="photos", size=size, pool=pool, seed=seed, val_pool=int(val_pool), split=split)
        # The split is in the id, so ids of different splits never collide, whatever the seeds.
        ids = [f"photos:{split}:{seed}:{i}" for i in range(pool)]
        labels = np.arange(pool, dtype=np.int64) % photos.NUM_CLASSES
        super().__init__(images, labels, ids, desc)
        self.num_classes = photos.NUM_CLASSES
        self.class_names = photos.CLASS_NAMES
        if lazy:
            self.images = None

    def load_array(self, i: int) -> np.ndarray:
        if self.images is not None:
            return self.images[i]
        return photos.photos_array(n=1, start=int(i), **self._gen)[0][0]



class DigitsSource(_SplitSource):
    """scikit-learn's bundled handwritten digits (see ``mimscale.data.digits``): 1,797 real 8x8 scans, labels
    0-9, upscaled bilinearly to ``size`` px and replicated to RGB.

    ``split="all"`` (the default): every image, no held-out split of its own (a study carves one). A named
    split ("train", "val", "probe", "test"; 1,000 / 197 / 300 / 300 images, disjoint, chosen by ``seed``)
    gives its first ``pool`` images (default: all of them); ``validation()`` of "train" is the "val" split
    of the same seed with ``val_pool`` images. Ids are ``digits:<index in scikit-learn's order>``.
    """

    def __init__(self, size=32, pool=None, seed=0, val_pool=None, split="all"):
        size, seed = int(size), int(seed)
        try:
            images, labels = digits.digits_images(size)
            idx = digits.split_indices(labels, seed, split)
        except ValueError as e:  # bad size / split / seed
            raise DataError(str(e)) from None
        held = len(idx)
        pool = held if pool is None else int(pool)
        val_pool = digits.SPLIT_SIZES["val"] if val_pool is None else int(val_pool)
        if not 1 <= pool <= held:
            raise DataError(f"digits pool must be 1-{held} (split {split!r} holds {held} images), got {pool}")
        idx = idx[:pool]
        desc = {"kind": "digits", "size": size}  # plain `digits`: the description of 0.4.0 and earlier
        if split != "all":
            desc.update(pool=pool, seed=seed, val_pool=val_pool, split=split)
        elif pool < held:
            desc["pool"] = pool
        super().__init__(images[idx], labels[idx], [f"digits:{i}" for i in idx], desc)
        self.num_classes = digits.NUM_CLASSES
        self.class_names = digits.CLASS_NAMES


def sample_images_source(tile: int = 0) -> ArraySource:
    """scikit-learn's two bundled photos (``china.jpg``, ``flower.jpg``; 427x640 RGB, CC-licensed).

    ``tile=0``: the two whole photos (label = photo). ``tile=T``: non-overlapping T x T tiles of both
    photos in row-major order (label = photo), e.g. 120 tiles at T=64. Good for smoke tests of the
    real-photo path, far too small to pre-train on. No val split.
    """
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    names = [os.path.basename(f) for f in bunch.filenames]
    images, labels, ids = [], [], []
    for k, (name, photo) in enumerate(zip(names, bunch.images)):
        if tile <= 0:
            images.append(photo)
            labels.append(k)
            ids.append(f"sample_images:{name}")
            continue
        for r in range(photo.shape[0] // tile):
            for c in range(photo.shape[1] // tile):
                images.append(photo[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile])
                labels.append(k)
                ids.append(f"sample_images:{name}@{r},{c}")
    if not images:
        raise DataError(f"sample_images tile={tile} is larger than the photos (427x640)")
    return ArraySource(np.stack(images).astype(np.uint8), np.array(labels), ids,
                       {"kind": "sample_images", "tile": int(tile)})  # fmt: skip


class FolderSource(_Labelled):
    """An image folder: ImageNet layout ``root/<class>/<image>`` (label = sorted class index) or a
    flat folder of images (no labels). A root holding ``train/`` (and ``val/``) sub-folders is read
    as ``root/train``, with ``root/val`` as its validation split. Ids are relative POSIX paths.
    Files are listed by extension (``IMAGE_EXTENSIONS``; hidden files and folders are ignored) and
    only decoded when loaded, so files that do not decode are found (and skipped, counted) by the
    data loader, or excluded from a held-out set by ``screen_readable``. Class folders may be
    symbolic links; symlinked folders below them are not followed.

    Entries that cannot be listed safely are skipped at scan time, never fatal:

    - a symbolic link that loops (to itself, in a cycle, or to a folder that contains it);
    - a broken symbolic link with an image extension, a sub-folder that cannot be read;
    - a file or folder whose name is not valid UTF-8 (ids must be UTF-8: they are hashed and
      written to JSON manifests).

    ``skipped_at_scan``: list of str, the relative paths of those entries (printable: bytes that are
    not UTF-8 are shown as ``\\xNN``), sorted; ``skip_reasons``: dict path -> one-line reason. The
    training code reports them alongside the files skipped by the loader. Both are empty for a clean
    folder; each split (``validation()``) has its own.
    """

    def __init__(self, path: str | os.PathLike, split: str = "auto"):
        root = Path(path).expanduser()
        if not root.exists():
            raise DataError(f"data path not found: {root}")
        if not root.is_dir():
            raise DataError(f"data path is not a directory: {root}")
        self.top = root.resolve()
        self.split = split
        if split == "auto" and is_split_layout(root):
            self.split = "train"
        self.root = self.top / self.split if self.split in ("train", "val") else self.top
        if not self.root.is_dir():
            raise DataError(f"data path not found: {self.root}")
        skips: dict[str, str] = {}
        root_real = os.path.realpath(self.root)
        classes, files, labels = [], [], []
        for entry in sorted(dir_entries(str(self.root), "", skips), key=lambda e: e.name):
            name = entry.name
            if not is_dir_entry(entry):
                if entry.is_symlink() and link_error(entry) == errno.ELOOP:
                    skips[printable(name)] = "symlink loop"
                continue
            if not is_utf8(name):
                if has_images(entry.path):
                    skips[printable(name)] = "folder name is not valid UTF-8"
                continue
            if entry.is_symlink() and path_contains(os.path.realpath(entry.path), root_real):
                skips[name] = "symlink loop (links to a folder that contains it)"
                continue
            class_skips: dict[str, str] = {}
            found = list_images(entry.path, name + "/", class_skips)
            # A folder whose only images are hidden (or skipped) stays a class, as it always has, so
            # labels and hence subsets of existing folders do not change.
            if found or has_images(entry.path):
                k = len(classes)
                classes.append(name)
                files += found
                labels += [k] * len(found)
            skips.update(class_skips)
        if not classes:
            skips = {}
            files = list_images(str(self.root), "", skips)
        if not files:
            raise DataError(f"no images found in {self.root}" + skip_note(skips))
        self.classes = classes
        self.ids = files
        self._labels = np.asarray(labels, dtype=np.int64) if classes else None
        self.num_classes = len(classes)
        self.skipped_at_scan = sorted(skips)
        self.skip_reasons = {k: skips[k] for k in self.skipped_at_scan}
        if skips:
            first = self.skipped_at_scan[0]
            log.warning("skipped %d entries of %s at scan (e.g. %s: %s)", len(skips), self.root, first,
                        skips[first])  # fmt: skip

    def __len__(self) -> int:
        return len(self.ids)

    def path(self, i: int) -> Path:
        return self.root / self.ids[i]

    def load(self, i: int) -> Image.Image:
        return Image.open(self.path(i))

    def describe(self) -> dict:
        return {"kind": "folder", "path": str(self.top), "split": self.split}

    def validation(self) -> Source | None:
        if self.split == "train" and (self.top / "val").is_dir():
            if getattr(self, "_val", None) is None:  # scanned once
                self._val = FolderSource(self.top, split="val")
            return self._val
        return None

    def __repr__(self) -> str:
        return f"FolderSource({self.root}, n={len(self)}, classes={self.num_classes})"


# --- spec parsing ---------------------------------------------------------------------------------
_BUILDERS = {
    "shapes": ShapesSource,
    "photos": PhotosSource,
    "digits": DigitsSource,
    "sample_images": sample_images_source,
    "folder": FolderSource,
}
KINDS = ("shapes", "photos", "digits", "sample_images", "folder", "shards", "segfolder")


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_spec(spec: str | dict | os.PathLike) -> dict:
    """Normalise a source spec to a dict with a ``kind`` key (see the module docstring)."""
    if isinstance(spec, dict):
        if "kind" not in spec:
            raise DataError(f"data source spec needs a 'kind' (one of {', '.join(KINDS)}): {spec}")
        return dict(spec)
    text = os.fspath(spec).strip()
    if not text:
        raise DataError("empty data source spec")
    kind, _, rest = text.partition(":")
    if kind in ("folder", "shards", "segfolder"):
        return {"kind": kind, "path": rest}
    if kind in _BUILDERS:
        out: dict[str, Any] = {"kind": kind}
        for item in filter(None, (s.strip() for s in rest.split(","))):
            key, eq, val = item.partition("=")
            if not eq:
                raise DataError(f"bad data source option {item!r} in {text!r} (expected key=value)")
            out[key.strip()] = _value(val.strip())
        return out
    if ".tar" in text or "{" in text:
        return {"kind": "shards", "path": text}
    if os.path.exists(os.path.expanduser(text)):
        return {"kind": "folder", "path": text}
    raise DataError(f"data source not found: {text} (not a path, and not one of {', '.join(KINDS)})")


def build_source(spec: str | dict | os.PathLike):
    """Build a source from a spec string, a dict (e.g. ``source.describe()``) or a path."""
    d = parse_spec(spec)
    kind = d.pop("kind")
    if kind == "shards":
        from .shards import ShardSource

        builder = ShardSource
    elif kind == "segfolder":
        from .segfolder import SegFolderSource

        builder = SegFolderSource
    elif kind in _BUILDERS:
        builder = _BUILDERS[kind]
    else:
        raise DataError(f"unknown data source kind {kind!r}; choose from {', '.join(KINDS)}")
    try:
        return builder(**d)
    except UserError:
        raise
    except (TypeError, ValueError, OverflowError) as e:  # an unknown option, or one of the wrong type (size=abc)
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"bad options for data source {kind!r}: {why}") from None
