"""Sources behind one interface: specs, folder layouts, built-in real images, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mimscale.data import DataError, FolderSource, Source, build_source, parse_spec


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("shapes", {"kind": "shapes"}),
        ("shapes:size=32,pool=1000,seed=0", {"kind": "shapes", "size": 32, "pool": 1000, "seed": 0}),
        (
            "shapes: noise=0.01, background=textured",
            {"kind": "shapes", "noise": 0.01, "background": "textured"},
        ),
        ("digits:size=16", {"kind": "digits", "size": 16}),
        ("folder:/x/y", {"kind": "folder", "path": "/x/y"}),
        ("shards:/d/train-{000..009}.tar", {"kind": "shards", "path": "/d/train-{000..009}.tar"}),
        ("/d/train-{000..009}.tar", {"kind": "shards", "path": "/d/train-{000..009}.tar"}),
        ({"kind": "shapes", "size": 8}, {"kind": "shapes", "size": 8}),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


def test_folder_with_classes(image_folder):
    src = build_source(str(image_folder))  # a plain path
    assert isinstance(src, Source) and isinstance(src, FolderSource)
    assert len(src) == 12 and src.num_classes == 3
    assert src.ids[0] == "class_0/img_000.jpg" and src.ids == sorted(src.ids)
    np.testing.assert_array_equal(src.labels(), np.repeat([0, 1, 2], 4))
    img = src.load(5)
    assert img.size == (64, 48)
    assert src.label(5) == 1
    assert build_source(src.describe()).ids == src.ids
    assert build_source(f"folder:{image_folder}").ids == src.ids
    assert src.validation() is None


def test_flat_folder_has_no_labels(tmp_path, helpers):
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(helpers.jpeg_bytes(i))
    (tmp_path / "notes.txt").write_text("ignored")
    src = build_source(tmp_path)
    assert src.ids == ["0.jpg", "1.jpg", "2.jpg"]
    assert src.labels() is None and src.label(0) is None and src.num_classes == 0


def test_imagenet_train_val_layout(tmp_path, helpers):
    helpers.make_folder(tmp_path / "train", classes=2, per_class=3)
    helpers.make_folder(tmp_path / "val", classes=2, per_class=1)
    src = build_source(tmp_path)
    assert len(src) == 6 and src.describe()["split"] == "train"
    val = src.validation()
    assert len(val) == 2 and val.num_classes == 2
    assert build_source(val.describe()).ids == val.ids


def test_builtin_real_images():
    digits = build_source("digits")
    assert len(digits) == 1797 and digits.num_classes == 10
    assert digits.load_array(0).shape == (32, 32, 3)
    assert digits.load(0).mode == "RGB"
    photos = build_source("sample_images")
    assert photos.ids == ["sample_images:china.jpg", "sample_images:flower.jpg"]
    assert photos.load_array(1).shape == (427, 640, 3)
    tiles = build_source("sample_images:tile=64")
    assert len(tiles) == 2 * 6 * 10 and tiles.load_array(0).shape == (64, 64, 3)
    np.testing.assert_array_equal(tiles.load_array(1), photos.load_array(0)[:64, 64:128])


@pytest.mark.parametrize(
    "spec, match",
    [
        ("/no/such/dir", "not found"),
        ("folder:/no/such/dir", "not found"),
        ("shards:/no/such/shard-{0..3}.tar", "shard not found"),
        ("nonsense:1", "not found"),
        ({"size": 3}, "kind"),
        ({"kind": "hdf5"}, "unknown data source kind"),
        ("shapes:size", "key=value"),
        ("sample_images:tile=1000", "larger"),
    ],
)
def test_bad_specs_are_one_line_data_errors(spec, match):
    with pytest.raises(DataError, match=match) as e:
        build_source(spec)
    assert "\n" not in str(e.value) and isinstance(e.value, ValueError)


def test_empty_folder_is_a_data_error(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="no images"):
        build_source(tmp_path)


def test_file_path_is_not_a_folder(tmp_path):
    f = tmp_path / "x.jpg"
    Image.new("RGB", (4, 4)).save(f)
    with pytest.raises(DataError, match="not a directory"):
        FolderSource(f)


def test_segmentation_folder_is_a_data_source(tmp_path):
    """``segfolder:/path``: image / mask pairs matched by relative path, train and val splits."""
    for split, n in (("train", 3), ("val", 2)):
        for i in range(n):
            (tmp_path / "images" / split).mkdir(parents=True, exist_ok=True)
            (tmp_path / "masks" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 10, 3), 40 * i, np.uint8)).save(tmp_path / "images" / split / f"{i}.jpg")
            Image.fromarray(np.full((8, 10), i, np.uint8)).save(tmp_path / "masks" / split / f"{i}.png")
    src = build_source(f"segfolder:{tmp_path}")
    assert len(src) == 3 and src.ids == ["0.jpg", "1.jpg", "2.jpg"] and src.labels() is None
    assert src.segmentation(2).shape == (8, 10) and int(src.segmentation(2).max()) == 2
    assert src.load(1).size == (10, 8)
    assert len(src.validation()) == 2 and build_source(src.describe()).ids == src.ids
    with pytest.raises(DataError, match="needs images/ and masks/"):
        build_source(f"segfolder:{tmp_path / 'images'}")
