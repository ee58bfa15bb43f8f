"""The built-in ``photos`` dataset: determinism, splits from disjoint tiles, labels, spec, learnability."""

from __future__ import annotations

import numpy as np
import pytest

from mimscale.data import DataError, build_source
from mimscale.data.photos import (
    CLASS_NAMES,
    GRID,
    NUM_CLASSES,
    SPLITS,
    crop_params,
    load_photos,
    photos_array,
    split_tiles,
    tile_box,
)
from mimscale.data.sources import PhotosSource


def test_ten_photos_load_as_distinct_rgb_images():
    photos = load_photos()
    assert len(photos) == NUM_CLASSES == len(set(CLASS_NAMES)) == 10
    assert load_photos() is photos  # decoded once per process
    means = set()
    for im in photos:
        assert im.mode == "RGB" and min(im.size) >= 256
        means.add(round(float(np.asarray(im).mean()), 1))
    assert len(means) == 10


def test_images_depend_only_on_seed_split_and_index():
    small = build_source("photos:size=32,pool=10,seed=3")
    big = build_source("photos:size=32,pool=100,seed=3")
    np.testing.assert_array_equal(small.images, big.images[:10])
    again = build_source("photos:size=32,pool=100,seed=3")
    np.testing.assert_array_equal(again.images, big.images)
    part, labels = photos_array(3, "train", 7, 32, start=41)  # another start and count
    np.testing.assert_array_equal(part, big.images[41:48])
    np.testing.assert_array_equal(labels, np.arange(41, 48) % 10)
    assert big.images.shape == (100, 32, 32, 3) and big.images.dtype == np.uint8


def test_other_seed_gives_other_crops():
    a = build_source("photos:size=32,pool=50,seed=0")
    b = build_source("photos:size=32,pool=50,seed=1")
    np.testing.assert_array_equal(a.labels(), b.labels())
    differ = [not np.array_equal(x, y) for x, y in zip(a.images, b.images)]
    assert sum(differ) >= 48
    assert [p[2] for p in crop_params(0, "train", 0, 20)] != [p[2] for p in crop_params(1, "train", 0, 20)]


def test_labels_ids_and_classes():
    src = build_source("photos:size=16,pool=35,seed=2,split=probe")
    assert src.labels().dtype == np.int64
    np.testing.assert_array_equal(src.labels(), np.arange(35) % 10)
    assert src.num_classes == 10 and src.label(13) == 3
    assert src.class_names == CLASS_NAMES
    assert len(set(src.ids)) == 35 and src.ids[4] == "photos:probe:2:4"
    assert src.load_array(5).shape == (16, 16, 3) and src.load(5).size == (16, 16)
    assert build_source("photos:pool=3").num_classes == 10  # fewer images than classes


def test_ids_are_disjoint_across_splits_and_seeds():
    ids = [build_source(f"photos:size=8,pool=20,seed={seed},split={s}").ids for s in SPLITS for seed in (0, 1)]
    flat = [i for group in ids for i in group]
    assert len(set(flat)) == len(flat) == 8 * 20


def test_tiles_partition_the_grid_and_crops_stay_in_their_split():
    tiles = {s: set(split_tiles(s)) for s in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            assert a == b or not tiles[a] & tiles[b], (a, b)
    assert set().union(*tiles.values()) == {(r, c) for r in range(GRID) for c in range(GRID)}
    assert [len(tiles[s]) for s in SPLITS] == [10, 2, 2, 2]
    dims = [(im.height, im.width) for im in load_photos()]
    for split in SPLITS:
        seen = set()
        for label, tile, (left, top, right, bottom), _ in crop_params(5, split, 0, 400):
            assert tile in tiles[split]
            x0, y0, x1, y1 = tile_box(*dims[label], *tile)
            assert x0 <= left < right <= x1 and y0 <= top < bottom <= y1
            side = right - left
            assert side == bottom - top and min(x1 - x0, y1 - y0) // 2 <= side <= min(x1 - x0, y1 - y0)
            seen.add((label, tile))
        assert seen == {(k, t) for k in range(10) for t in tiles[split]}  # every tile of every photo used


def test_tile_boxes_do_not_overlap():
    boxes = [tile_box(300, 451, r, c) for r in range(GRID) for c in range(GRID)]
    covered = np.zeros((300, 451), dtype=int)
    for left, top, right, bottom in boxes:
        covered[top:bottom, left:right] += 1
    assert covered.max() == 1 and covered.sum() == 16 * 75 * 112


def test_validation_is_the_val_split():
    src = build_source("photos:size=16,pool=30,seed=4,val_pool=20")
    val = src.validation()
    assert len(val) == 20 and val.describe()["split"] == "val"
    np.testing.assert_array_equal(val.images, photos_array(4, "val", 20, 16)[0])
    assert val.validation() is None and src.validation() is val
    assert build_source("photos:pool=5,split=test").validation() is None


def test_spec_round_trip():
    src = build_source("photos:size=24,pool=15,seed=7,val_pool=5,split=test")
    assert src.describe() == dict(kind="photos", size=24, pool=15, seed=7, val_pool=5, split="test")
    again = build_source(src.describe())
    np.testing.assert_array_equal(again.images, src.images)
    assert again.ids == src.ids


def test_lazy_source_crops_the_same_images(monkeypatch):
    eager = build_source("photos:size=16,pool=12,seed=1")
    monkeypatch.setattr(PhotosSource, "CACHE_BYTES", 100)
    lazy = build_source("photos:size=16,pool=12,seed=1")
    assert lazy.images is None and len(lazy) == 12
    for i in (0, 7, 11):
        np.testing.assert_array_equal(lazy.load_array(i), eager.images[i])


def test_images_are_not_flat_and_are_flipped_sometimes():
    imgs, _ = photos_array(0, "train", 300, 32)
    std = imgs.reshape(300, -1, 3).astype(float).std(1).mean(1)  # spatial std, mean over channels
    assert np.mean(std > 6) > 0.9, np.mean(std > 6)
    assert len({im.tobytes() for im in imgs}) == 300
    flips = [f for *_, f in crop_params(0, "train", 0, 300)]
    assert 0.35 < np.mean(flips) < 0.65
    for split in SPLITS[1:]:
        held, _ = photos_array(0, split, 200, 32)
        assert np.mean(held.reshape(200, -1, 3).astype(float).std(1).mean(1) > 6) > 0.9, split


@pytest.mark.parametrize(
    "spec, message",
    [
        ("photos:pool=0", "photos pool must be >= 1, got 0"),
        ("photos:split=training", "unknown photos split 'training'; choose from train, val, probe, test"),
        ("photos:size=4", "photos size must be >= 8 px, got 4"),
        ("photos:noise=0.1", "bad options for data source 'photos'"),
    ],
)
def test_bad_parameters(spec, message):
    with pytest.raises(DataError, match=message):
        build_source(spec)


def test_labels_are_learnable_by_a_linear_classifier():
    from sklearn.linear_model import LogisticRegression

    probe = build_source("photos:size=32,pool=1000,seed=0,split=probe")
    test = build_source("photos:size=32,pool=500,seed=0,split=test")

    def colour_histogram(images, bins=4):  # 64 joint RGB bins, fraction of pixels
        q = images.astype(np.int64) // (256 // bins)
        code = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
        return np.stack([np.bincount(c.ravel(), minlength=bins**3) for c in code]) / code[0].size

    clf = LogisticRegression(C=10.0, max_iter=3000).fit(colour_histogram(probe.images), probe.labels())
    acc = clf.score(colour_histogram(test.images), test.labels())
    assert acc > 0.5, acc  # chance is 0.1
