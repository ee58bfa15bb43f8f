"""The built-in ``digits`` dataset: scikit-learn's handwritten digits cut into disjoint, balanced, seeded splits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from mimscale.data import DataError, build_source
from mimscale.data.digits import SPLIT_SIZES, digits_images, split_indices


def _index(source) -> np.ndarray:
    return np.array([int(i.split(":")[1]) for i in source.ids])


def test_images_are_sklearns_digits_upscaled():
    ref = load_digits()
    images, labels = digits_images(32)
    assert images.shape == (1797, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, ref.target)
    # bilinear upscaling of 8x8: each 4x4 block's mean tracks its source pixel (0-16 scaled to 0-255)
    blocks = images[..., 0].reshape(1797, 8, 4, 8, 4).mean(axis=(2, 4))
    corr = np.corrcoef(blocks.ravel(), ref.images.ravel())[0, 1]
    assert corr > 0.95
    assert (images[..., 0] == images[..., 2]).all()  # grey, replicated to RGB


def test_splits_are_disjoint_complete_balanced_and_seeded():
    _, labels = digits_images(8)
    parts = {s: split_indices(labels, 0, s) for s in SPLIT_SIZES}
    assert {s: len(p) for s, p in parts.items()} == SPLIT_SIZES == {"test": 300, "probe": 300, "val": 197,
                                                                       "train": 1000}
    every = np.concatenate(list(parts.values()))
    assert len(set(every.tolist())) == 1797  # disjoint and complete
    for s in ("test", "probe"):
        assert np.bincount(labels[parts[s]], minlength=10).tolist() == [30] * 10
    assert set(np.bincount(labels[parts["val"]], minlength=10).tolist()) <= {19, 20}
    # the first 50 of a split hold each class 5 times: any pool is as balanced as it can be
    assert np.bincount(labels[parts["probe"][:50]], minlength=10).tolist() == [5] * 10
    other = split_indices(labels, 1, "test")
    assert len(set(other.tolist()) & set(parts["test"].tolist())) < 100  # another seed, other images
    np.testing.assert_array_equal(split_indices(labels, 0, "test"), parts["test"])  # a pure function


def test_a_train_split_source_has_its_val_split_and_rebuilds_from_its_description():
    src = build_source("digits:size=16,pool=100,seed=2,split=train")
    assert len(src) == 100 and src.num_classes == 10 and src.class_names[3] == "3"
    assert src.load_array(0).shape == (16, 16, 3)
    assert build_source(src.describe()).ids == src.ids
    val = src.validation()
    assert len(val) == SPLIT_SIZES["val"] and not set(val.ids) & set(src.ids)
    whole_train = build_source("digits:size=16,seed=2,split=train")
    assert whole_train.ids[:100] == src.ids  # a pool is the first images of its split
    images, labels = digits_images(16)
    np.testing.assert_array_equal(src.images, images[_index(src)])
    np.testing.assert_array_equal(src.labels(), labels[_index(src)])
    assert build_source("digits:size=16,pool=30,split=probe").validation() is None


def test_plain_digits_is_every_image_without_a_split():
    src = build_source("digits:size=8")
    assert len(src) == 1797 and src.describe() == {"kind": "digits", "size": 8} and src.validation() is None
    assert _index(src).tolist() == list(range(1797))
    first = build_source("digits:size=8,pool=50")
    assert first.ids == src.ids[:50] and build_source(first.describe()).ids == first.ids


@pytest.mark.parametrize("spec, match", [
    ("digits:split=probe,pool=301", r"pool must be 1-300 \(split 'probe' holds 300 images\), got 301"),
    ("digits:split=train,pool=0", "pool must be 1-1000"),
    ("digits:split=holdout", "unknown digits split 'holdout'"),
    ("digits:size=4", "size must be >= 8"),
    ("digits:split=test,seed=-1", "seed"),
])  # fmt: skip
def test_bad_digits_specs_are_one_line_errors(spec, match):
    with pytest.raises(DataError, match=match) as e:
        build_source(spec)
    assert "\n" not in str(e.value)
