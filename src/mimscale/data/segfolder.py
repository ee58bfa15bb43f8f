"""A segmentation data source: a folder of image / mask pairs (``segfolder:/path`` in an evaluation's
``train_source`` / ``test_source``; the built-in ``shapes`` source carries its own masks)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from mimscale.errors import DataError

from .scan import IMAGE_EXTENSIONS
from .transforms import to_rgb


class SegFolderSource:
    """Image / mask pairs: ``root/images/**/<stem>.<ext>`` with ``root/masks/**/<stem>.png`` (or
    ``annotations/``, the ADE20K layout), matched by relative path without extension. Masks hold class
    indices (one channel); 255 is ignored. With ``images/train`` and ``images/val`` (or ``training`` /
    ``validation``) sub-folders the source reads the training split, ``validation()`` the other."""

    def __init__(self, path: str, split: str = "auto"):
        top = Path(path).expanduser()
        img_dir = top / "images"
        mask_dir = next((top / d for d in ("masks", "annotations") if (top / d).is_dir()), None)
        if not img_dir.is_dir() or mask_dir is None:
            raise DataError(f"segmentation folder {top} needs images/ and masks/ (or annotations/) sub-folders")
        splits = [s for s in ("train", "training", "val", "validation") if (img_dir / s).is_dir()]
        if split == "auto":
            split = splits[0] if splits else ""
        self.top, self.split = top, split
        self.img_root, self.mask_root = img_dir / split, mask_dir / split
        masks = {}
        for dirpath, _, files in os.walk(self.mask_root):
            for f in files:
                if f.lower().endswith(".png"):
                    rel = Path(dirpath, f).relative_to(self.mask_root)
                    masks[rel.with_suffix("").as_posix()] = rel
        self.ids, self._masks = [], []
        for dirpath, dirs, files in os.walk(self.img_root):
            dirs.sort()
            for f in sorted(files):
                rel = Path(dirpath, f).relative_to(self.img_root)
                key = rel.with_suffix("").as_posix()
                if f.lower().endswith(IMAGE_EXTENSIONS) and key in masks:
                    self.ids.append(rel.as_posix())
                    self._masks.append(masks[key])
        if not self.ids:
            raise DataError(f"no image/mask pairs found under {self.img_root} and {self.mask_root}")
        self.num_classes = 0  # counted by segmentation_classes() when needed

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, i: int) -> Image.Image:
        return to_rgb(Image.open(self.img_root / self.ids[i]))

    def segmentation(self, i: int) -> np.ndarray:
        m = np.asarray(Image.open(self.mask_root / self._masks[i]))
        if m.ndim != 2:
            raise DataError(f"mask {self._masks[i]} has shape {m.shape}; masks must be one-channel class maps")
        return m

    def labels(self):
        return None

    def describe(self) -> dict:
        return {"kind": "segfolder", "path": str(self.top), "split": self.split}

    def validation(self):
        other = {"train": "val", "training": "validation"}.get(self.split)
        if other and (self.top / "images" / other).is_dir():
            return SegFolderSource(str(self.top), split=other)
        return None
