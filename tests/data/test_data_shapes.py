"""The procedural shapes dataset: determinism, labels, segmentation, splits."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from mimscale.data import DataError, build_source, shapes_array, split_seed
from mimscale.data.shapes import NUM_CLASSES, SEG_OCCLUDER


def test_images_depend_only_on_seed_and_index():
    a, la, sa = shapes_array(3, 40, 32)
    b, lb, sb = shapes_array(3, 7, 32, start=21)  # different chunking and start
    assert a.shape == (40, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a[21:28], b)
    np.testing.assert_array_equal(sa[21:28], sb)
    np.testing.assert_array_equal(la[21:28], lb)
    c, _, _ = shapes_array(4, 40, 32)
    assert (a != c).mean() > 0.5  # another seed, other images


def test_same_pixels_in_another_process_and_hash_seed():
    a, _, _ = shapes_array(11, 5, 24, start=100)
    code = (
        "import hashlib;from mimscale.data import shapes_array;"
        "print(hashlib.sha256(shapes_array(11, 5, 24, start=100)[0].tobytes()).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    import hashlib

    assert out.stdout.strip() == hashlib.sha256(a.tobytes()).hexdigest()


def test_labels_segmentation_and_content():
    imgs, labels, seg = shapes_array(0, 200, 32)
    np.testing.assert_array_equal(labels, np.arange(200) % NUM_CLASSES)
    for i in range(200):
        values = set(np.unique(seg[i]).tolist())
        assert values <= {0, labels[i] + 1, SEG_OCCLUDER}
        assert labels[i] + 1 in values  # the shape is visible
        frac = (seg[i] == labels[i] + 1).mean()
        assert 0.05 < frac < 0.8, (i, frac)  # large centred shape, not the whole frame
    occluded = np.mean([(s == SEG_OCCLUDER).any() for s in seg])
    assert 0.05 < occluded < 0.3  # p = 0.15
    # shape pixels differ from background pixels (contrast >= 0.3 per channel by construction)
    fg = imgs[0][seg[0] == 1].mean(0)
    bg = imgs[0][seg[0] == 0].mean(0)
    assert np.abs(fg.astype(float) - bg).max() > 50
    # images are diverse: no two of the first 50 identical, colours vary
    assert len({im.tobytes() for im in imgs[:50]}) == 50
    assert imgs.reshape(200, -1, 3).mean(1).std(0).min() > 20


def test_sizes_scale():
    imgs, _, seg = shapes_array(0, 10, 64)
    assert imgs.shape == (10, 64, 64, 3)
    small = shapes_array(0, 10, 32)[2]
    # shape area fraction is about the same at both resolutions
    assert abs((seg > 0).mean() - (small > 0).mean()) < 0.05


def test_source_splits_are_disjoint_and_val_is_other_seed():
    src = build_source("shapes:size=16,pool=30,seed=5,val_pool=20")
    val = src.validation()
    assert len(src) == 30 and len(val) == 20
    assert not set(src.ids) & set(val.ids)
    assert val.ids[0] == f"shapes:{split_seed(5, 'val')}:0"
    np.testing.assert_array_equal(val.load_array(3), shapes_array(split_seed(5, "val"), 1, 16, start=3)[0][0])
    assert src.segmentation(4).shape == (16, 16)
    assert src.num_classes == 10 and src.label(13) == 3
    again = build_source(src.describe())
    np.testing.assert_array_equal(again.images, src.images)


def test_bad_options_are_data_errors():
    with pytest.raises(DataError, match="size"):
        build_source("shapes:size=4")
    with pytest.raises(DataError, match="pool"):
        build_source("shapes:pool=0")
    with pytest.raises(DataError, match="bad options"):
        build_source("shapes:colour=red")


def test_large_pools_are_generated_per_access(monkeypatch):
    from mimscale.data import ShapesSource

    eager = build_source("shapes:size=16,pool=30")
    monkeypatch.setattr(ShapesSource, "CACHE_BYTES", 1000)
    lazy = build_source("shapes:size=16,pool=30")
    assert lazy.images is None and len(lazy) == 30 and lazy.ids == eager.ids
    np.testing.assert_array_equal(lazy.labels(), eager.labels())
    for i in (0, 17, 29):
        np.testing.assert_array_equal(lazy.load_array(i), eager.load_array(i))
        np.testing.assert_array_equal(lazy.segmentation(i), eager.segmentation(i))
