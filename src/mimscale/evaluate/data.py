"""Downstream datasets: labelled sources for classification, image/mask pairs for segmentation.

Any ``mimscale.data`` source with labels works (the built-in ``shapes`` and ``digits``, an ImageNet-
style folder ``root/<class>/<image>``); segmentation takes the built-in ``shapes`` masks or
``segfolder:/path``, a folder of image / mask pairs (``mimscale.data.segfolder.SegFolderSource``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mimscale.data.sources import build_source, parse_spec
from mimscale.data.transforms import EvalTransform, Normalize, TrainTransform, center_offset
from mimscale.errors import EvalError
from mimscale.evaluate.augment import rand_augment
from mimscale.evaluate.config import data_name
from mimscale.evaluate.engine import check_epoch

# The built-in downstream data: labelled pools generated from seeds disjoint from pre-training's.
DEFAULT_TRAIN = "shapes:size={size},pool=2000,seed=0,split=probe"
DEFAULT_TEST = "shapes:size={size},pool=1000,seed=0,split=test"


def build_sources(train_spec: str, test_spec: str, size: int, build=build_source):
    """(train, test) sources; an empty test spec takes the train source's own validation split. Builds, never
    decodes: a folder is listed, so this is also the check a study runs before any compute (``build``: its
    cache, so a folder several checks read is listed once)."""
    train = build(train_spec or DEFAULT_TRAIN.format(size=size))
    if test_spec:
        test = build(test_spec)
    elif not train_spec:
        test = build(DEFAULT_TEST.format(size=size))
    else:
        test = train.validation()
        if test is None:
            layout = " (ROOT/train and ROOT/val class folders)" if train.describe().get("kind") == "folder" else ""
            raise EvalError(f"train_source {train_spec} has no validation split{layout}: give test_source=...")
    return train, test


def check_data(train, test, cfg) -> None:
    """What the task needs of its data, checked without computing: labels for classification, masks for
    segmentation (their class count is scanned when the evaluation runs)."""
    if cfg.task == "segment":
        _require_masks(train)
        _require_masks(test)
    else:
        check_labels(train, test, cfg.num_classes, cfg.task)
    if cfg.task == "finetune":
        check_epoch(len(train), cfg.batch_size, cfg.drop_last)


def resolve_data(cfg, size: int, build=build_source) -> dict:
    """The ``describe()`` of an evaluation's train and test data and its name in words, every check done,
    without computing (the study runner's check before pre-training). The default built-in shapes pools are
    described, not generated."""
    if not cfg.train_source and not cfg.test_source:
        train, test = (parse_spec(s.format(size=size)) for s in (DEFAULT_TRAIN, DEFAULT_TEST))
        if cfg.task == "finetune":  # the pools' sizes are in their specs: the epoch is checked as for any data
            check_epoch(int(train["pool"]), cfg.batch_size, cfg.drop_last)
    else:
        sources = build_sources(cfg.train_source, cfg.test_source, size, build)
        check_data(*sources, cfg)
        train, test = (s.describe() for s in sources)
    return {"train": train, "test": test, "name": data_name(train, test)}


def check_labels(train, test, num_classes: int, task: str) -> int:
    """The class count both splits agree on; one-line errors for unlabelled data or a mismatch."""
    for what, src in (("train_source", train), ("test_source", test)):
        if src.labels() is None:
            raise EvalError(f"{what} {src.describe()} has no labels; task '{task}' needs labelled images "
                            f"(a folder root/<class>/<image>, or a built-in labelled source)")
    n = max(train.num_classes, int(train.labels().max()) + 1)
    n_test = int(test.labels().max()) + 1
    if n_test > n:
        raise EvalError(f"test_source has labels up to {n_test - 1} but train_source has {n} classes")
    if num_classes and num_classes != n:
        raise EvalError(f"num_classes={num_classes} but the data has {n} classes")
    return n


def _load(source, i: int):
    return source.load_array(i) if hasattr(source, "load_array") else source.load(i)


class ClassificationData(torch.utils.data.Dataset):
    """(normalised image, label). Training: RandomResizedCrop + flip (+ RandAugment), every draw from
    a generator seeded by (seed, epoch, index), so augmentation does not depend on worker scheduling.
    ``jpeg_draft``: large JPEGs decoded at a reduced scale where the output size allows (faster; the official
    pipeline decodes in full: false)."""

    def __init__(self, source, size: int, train: bool = False, seed: int = 0, crop_scale=(0.08, 1.0),
                 hflip: bool = True, randaug: tuple[int, float, float] = (0, 0.0, 0.0), test_crop: float = 1.0,
                 interpolation: str = "bilinear", jpeg_draft: bool = True):
        self.source, self.train, self.seed, self.epoch = source, train, seed, 0
        self.labels = source.labels()
        self.randaug = randaug
        # Test geometry: shorter side to size / test_crop (the ImageNet convention: 224/0.875 = 256), center crop.
        self.eval_tf = EvalTransform(size, resize=int(size / test_crop), interpolation=interpolation,
                                     draft=jpeg_draft, round_center=True)
        # The same interpolation for the training crop and RandAugment's warps (timm's create_transform).
        self.train_tf = TrainTransform(size, scale=tuple(crop_scale), hflip=hflip, interpolation=interpolation,
                                       draft=jpeg_draft)
        self.normalize = Normalize()

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int):
        img = _load(self.source, i)
        label = int(self.labels[i]) if self.labels is not None else -1
        if not self.train:
            return self.eval_tf(img), label
        rng = np.random.default_rng([self.seed, self.epoch, i])
        x = self.train_tf.crop_resize(img, rng)
        if self.randaug[0] > 0:
            x = rand_augment(x.float() / 255, *self.randaug, rng=rng, mode=self.train_tf.interpolation) * 255
        return self.normalize(x), label


def _require_masks(source) -> None:
    if not hasattr(source, "segmentation"):
        raise EvalError(f"data source {source.describe()} has no segmentation masks; use the built-in shapes "
                        f"source or segfolder:/path")


def label_lut(label_map: dict | None) -> np.ndarray | None:
    """Mask value -> class lookup table from ``{value: class}`` (unlisted values keep their own)."""
    if not label_map:
        return None
    lut = np.arange(65536, dtype=np.int64)  # masks are 8- or 16-bit PNGs
    for k, v in label_map.items():
        lut[int(k)] = int(v)
    return lut


def segmentation_classes(source, ignore_index: int, label_map: dict | None = None) -> int:
    """Number of classes: 1 + the largest class value after ``label_map`` (ignore_index excluded); the
    built-in shapes have all their values in every pool, a folder's masks are scanned."""
    from mimscale.data.shapes import SEG_NUM_CLASSES

    _require_masks(source)
    if getattr(source, "describe", dict)().get("kind") == "shapes":
        values = np.arange(SEG_NUM_CLASSES)
    else:
        values = np.unique(np.concatenate([np.unique(source.segmentation(i)) for i in range(len(source))]))
    lut = label_lut(label_map)
    if lut is not None:
        values = lut[values]
    values = values[values != ignore_index]
    return int(values.max()) + 1 if values.size else 0


class SegmentationData(torch.utils.data.Dataset):
    """(normalised image (3, S, S), mask (S, S) int64): shorter side resized to S and center-cropped,
    bilinear for the image and nearest for the mask; training adds a seeded horizontal flip.
    ``label_map`` ({mask value: class}) merges or renames classes, e.g. shapes' 10 shape classes into one."""

    def __init__(self, source, size: int, train: bool = False, seed: int = 0, hflip: bool = True,
                 label_map: dict | None = None):
        _require_masks(source)
        self.source, self.train, self.seed, self.hflip, self.epoch = source, train, seed, hflip, 0
        self.lut = label_lut(label_map)
        self.tf = EvalTransform(size, round_center=True)
        self.size = size

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def mask(self, i: int) -> torch.Tensor:
        """Mask ``i`` at its own size, classes mapped."""
        m = np.asarray(self.source.segmentation(i)).astype(np.int64)
        return torch.from_numpy(self.lut[m] if self.lut is not None else m)

    def __getitem__(self, i: int):
        img = _load(self.source, i)
        mask = self.mask(i)
        hw = tuple(img.shape[:2]) if isinstance(img, np.ndarray) else (img.size[1], img.size[0])
        if tuple(mask.shape) != hw:
            raise EvalError(f"mask of image {i} is {tuple(mask.shape)} but the image is {hw}")
        x = self.tf(img)
        mask = _resize_crop_mask(mask, self.size)
        if self.train and self.hflip and np.random.default_rng([self.seed, self.epoch, i]).random() < 0.5:
            x, mask = x.flip(-1), mask.flip(-1)
        return x, mask


def _resize_crop_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """The mask through EvalTransform's geometry (shorter side to ``size``, center crop), nearest."""
    h, w = mask.shape
    th, tw = (size, max(size, int(size * w / h))) if h <= w else (max(size, int(size * h / w)), size)
    if (th, tw) != (h, w):
        mask = F.interpolate(mask[None, None].float(), size=(th, tw), mode="nearest")[0, 0].long()
    top, left = center_offset(th, size), center_offset(tw, size)  # the image's own crop
    return mask[top:top + size, left:left + size]


def loader(dataset, batch_size: int, shuffle: bool, num_workers: int, seed: int, epoch: int = 0):
    gen = torch.Generator().manual_seed(seed * 1000 + epoch)  # the shuffle order is part of the result
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen,
                                       num_workers=num_workers, drop_last=False,
                                       pin_memory=torch.cuda.is_available())
