"""Hostile inputs to the data layer: symlink loops and non-UTF-8 names in a folder, 16-bit and alpha
images, held-out sets with unreadable files, impossible transform sizes and crop bounds."""

from __future__ import annotations

import io
import logging
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from mimscale.data import (
    DataError,
    EvalTransform,
    FolderSource,
    SimMIMValDataset,
    TrainTransform,
    build_source,
    ids_sha256,
    make_subsets,
    plan_data,
    screen_readable,
    to_rgb,
)


def _bytes_name_file(folder, name: bytes, data: bytes) -> bool:
    """Create ``folder/name`` from a bytes name; False where the file system refuses such names."""
    try:
        with open(os.path.join(os.fsencode(folder), name), "wb") as f:
            f.write(data)
    except (OSError, ValueError):
        return False
    return True


# --- 1a: symlink loops -------------------------------------------------------------------------------
def test_symlink_loops_are_skipped_and_listed(tmp_path, helpers, caplog):
    root = helpers.make_folder(tmp_path / "imgs", classes=2, per_class=2)
    os.symlink("loop.jpg", root / "class_0" / "loop.jpg")  # to itself
    os.symlink("b.jpg", root / "class_1" / "a.jpg")  # a cycle of two
    os.symlink("a.jpg", root / "class_1" / "b.jpg")
    os.symlink("../class_0", root / "class_0" / "up")  # a folder that contains it
    os.symlink(".", root / "here")  # a class folder that is the root itself
    os.symlink("spin", root / "spin")  # a looping entry at the top (was an OSError traceback)
    with caplog.at_level(logging.WARNING, logger="mimscale.data"):
        src = build_source(root)
    assert src.ids == ["class_0/img_000.jpg", "class_0/img_001.jpg", "class_1/img_000.jpg",
                       "class_1/img_001.jpg"]  # fmt: skip
    assert src.classes == ["class_0", "class_1"] and src.labels().tolist() == [0, 0, 1, 1]
    assert src.skipped_at_scan == ["class_0/loop.jpg", "class_0/up", "class_1/a.jpg", "class_1/b.jpg",
                                   "here", "spin"]  # fmt: skip
    assert src.skip_reasons["class_0/loop.jpg"] == "symlink loop"
    assert src.skip_reasons["here"].startswith("symlink loop")
    assert sum("skipped 6 entries" in r.message for r in caplog.records) == 1
    # the subsets and their hashes work as for a clean folder
    manifests = make_subsets(src, [0.5, 1.0], seed=0, holdout=None)
    assert [len(m.ids) for m in manifests] == [2, 4]


def test_symlink_loop_in_a_flat_folder(tmp_path, helpers):
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(helpers.jpeg_bytes(i))
    os.symlink("x.png", tmp_path / "x.png")
    (tmp_path / "sub").mkdir()
    os.symlink("..", tmp_path / "sub" / "parent")
    os.symlink("missing.jpg", tmp_path / "dangling.jpg")
    os.symlink("0.jpg", tmp_path / "alias.jpg")  # a good link is kept
    src = build_source(tmp_path)
    assert src.ids == ["0.jpg", "1.jpg", "2.jpg", "alias.jpg"] and src.labels() is None
    assert src.skipped_at_scan == ["dangling.jpg", "sub/parent", "x.png"]
    assert src.skip_reasons["dangling.jpg"].startswith("broken symlink")


def test_clean_folders_report_nothing_skipped(image_folder):
    src = build_source(image_folder)
    assert src.skipped_at_scan == [] and src.skip_reasons == {}
    assert build_source("shapes:size=8,pool=4").skipped_at_scan == []


def test_a_folder_of_nothing_but_loops_is_a_one_line_data_error(tmp_path):
    os.symlink("a.jpg", tmp_path / "a.jpg")
    with pytest.raises(
        DataError, match=r"no images found .*1 entries skipped at scan, e.g. a.jpg: symlink loop"
    ):
        build_source(tmp_path)


# --- 1b: names that are not UTF-8 --------------------------------------------------------------------
def test_non_utf8_names_are_skipped_and_listed(tmp_path, helpers):
    root = helpers.make_folder(tmp_path / "imgs", classes=2, per_class=2)
    data = helpers.jpeg_bytes(7)
    if not _bytes_name_file(root / "class_1", b"bad\xff.png", data):
        pytest.skip("the file system refuses names that are not UTF-8")
    os.mkdir(os.path.join(os.fsencode(root), b"class_\xfe"))  # a class folder of such a name
    _bytes_name_file(os.path.join(os.fsencode(root), b"class_\xfe"), b"x.jpg", data)
    (root / "class_0" / "d\u00e9j\u00e0.jpg").write_bytes(data)  # valid UTF-8, not ASCII: kept
    src = build_source(root)
    assert src.classes == ["class_0", "class_1"]
    assert src.ids == ["class_0/d\u00e9j\u00e0.jpg", "class_0/img_000.jpg", "class_0/img_001.jpg",
                       "class_1/img_000.jpg", "class_1/img_001.jpg"]  # fmt: skip
    assert src.skipped_at_scan == ["class_1/bad\\xff.png", "class_\\xfe"]
    assert src.skip_reasons == {"class_1/bad\\xff.png": "file name is not valid UTF-8",
                                "class_\\xfe": "folder name is not valid UTF-8"}  # fmt: skip
    for path in src.skipped_at_scan:
        path.encode("utf-8")  # printable, writable to a UTF-8 report
    plan = plan_data(f"folder:{root}", fraction=1.0, holdout=1)  # hashed ids: no UnicodeEncodeError
    assert len(plan.train_indices) + len(plan.val_indices) == 5


def test_non_utf8_nested_folder_is_skipped(tmp_path, helpers):
    (tmp_path / "ok.jpg").write_bytes(helpers.jpeg_bytes(1))
    sub = os.path.join(os.fsencode(tmp_path), b"sub\xff")
    try:
        os.mkdir(sub)
    except OSError:
        pytest.skip("the file system refuses names that are not UTF-8")
    _bytes_name_file(sub, b"inner.jpg", helpers.jpeg_bytes(2))
    src = build_source(tmp_path)
    assert src.ids == ["ok.jpg"] and src.skipped_at_scan == ["sub\\xff"]


def test_ids_sha256_of_a_non_utf8_id_is_a_one_line_data_error():
    assert ids_sha256(["a", "b"]) == "7e18f737311b2dc3b2f269dd78396b0351f14fb66efa879f768cb23181883c78"
    with pytest.raises(DataError, match=r"image id 'bad\\udcff.png' is not valid UTF-8"):
        ids_sha256(["a", os.fsdecode(b"bad\xff.png")])


# --- 2: 16-bit, alpha and palette images --------------------------------------------------------------
def _png(arr: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG written by hand (PIL cannot write 16-bit colour): grey 0, grey+alpha 4, RGB 2, RGBA 6."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[r].astype(">u2").tobytes() for r in range(h))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def _decoded(img, size=8) -> torch.Tensor:
    """uint8 (3, size, size) through the evaluation path (same size: no resampling)."""
    return EvalTransform(size).crop_resize(img)


def test_16bit_grey_png_decodes_to_its_8bit_value(tmp_path):
    value = 0x8000 + 0x1234  # 37428 -> 146 in 8 bits (PIL's own convert clips it to 255)
    Image.fromarray(np.full((8, 8), value, dtype=np.uint16)).save(tmp_path / "grey16.png")
    img = Image.open(tmp_path / "grey16.png")
    assert img.mode.startswith("I")
    out = _decoded(img)
    assert out.dtype == torch.uint8 and out.shape == (3, 8, 8)
    assert out.unique().tolist() == [146]
    crop = TrainTransform(8).crop_resize(Image.open(tmp_path / "grey16.png"), np.random.default_rng(0))
    assert crop.unique().tolist() == [146]
    # through a folder source and the validation dataset's screening
    src = build_source(tmp_path)
    assert screen_readable(src, [0])[0].tolist() == [0]


def test_16bit_gradient_keeps_its_order_of_greys():
    ramp = (np.arange(16, dtype=np.uint16) * 4096 + 255).reshape(1, 16).repeat(16, 0)
    out = _decoded(Image.open(io.BytesIO(_png(ramp, 0))), 16)
    assert out[0, 0].tolist() == [16 * k for k in range(16)]
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])


@pytest.mark.parametrize(
    "mode, raw, expected",
    [
        ("I", np.full((8, 8), 40000, np.int32), 156),  # 32-bit integer grey holding 16-bit values
        ("I", np.full((8, 8), -5, np.int32), 0),  # clipped, no wrap-around
        ("I;16B", np.full((8, 8), 0x9000, ">u2"), 0x90),
    ],
)
def test_integer_modes_scale_16_bits_to_8(mode, raw, expected):
    img = Image.frombytes(mode, (8, 8), raw.tobytes()) if mode != "I" else Image.fromarray(raw, "I")
    assert img.mode == mode
    assert to_rgb(img).getpixel((0, 0)) == (expected,) * 3
    assert _decoded(img).unique().tolist() == [expected]


def test_16bit_colour_and_alpha_pngs():
    rgb = np.zeros((8, 8, 3), np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 0x1000, 0x8000, 0xFF00
    out = _decoded(Image.open(io.BytesIO(_png(rgb, 2))))
    assert [out[c].unique().tolist() for c in range(3)] == [[0x10], [0x80], [0xFF]]
    rgba = np.concatenate([rgb, np.full((8, 8, 1), 0x0100, np.uint16)], axis=-1)  # nearly transparent
    out = _decoded(Image.open(io.BytesIO(_png(rgba, 6))))
    assert [out[c].unique().tolist() for c in range(3)] == [[0x10], [0x80], [0xFF]]  # alpha dropped
    la = np.stack([np.full((8, 8), 0x8000, np.uint16), np.zeros((8, 8), np.uint16)], axis=-1)
    assert _decoded(Image.open(io.BytesIO(_png(la, 4)))).unique().tolist() == [0x80]


def test_alpha_and_palette_images_drop_alpha(recwarn):
    rgba = Image.fromarray(np.full((8, 8, 4), (10, 20, 30, 0), np.uint8), "RGBA")
    assert to_rgb(rgba).getpixel((0, 0)) == (10, 20, 30)
    la = Image.fromarray(np.full((8, 8, 2), (77, 0), np.uint8), "LA")
    assert to_rgb(la).getpixel((0, 0)) == (77, 77, 77)
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    pal.info["transparency"] = b"\xff\x00" + b"\xff" * 254  # palette entry 1 fully transparent
    assert to_rgb(pal).getpixel((0, 0)) == (200, 100, 50)
    assert _decoded(pal)[:, 0, 0].tolist() == [200, 100, 50]
    pa = pal.convert("PA")
    assert to_rgb(pa).getpixel((0, 0)) == (200, 100, 50)
    assert not [w for w in recwarn if "ransparency" in str(w.message)]


# --- 3: held-out sets are screened once --------------------------------------------------------------
def test_screen_readable_keeps_order_and_names_the_excluded(tmp_path, helpers, mask16):
    folder = helpers.make_folder(tmp_path / "imgs", classes=1, per_class=4)
    helpers.add_corrupt_files(folder / "class_0")
    src = build_source(folder)
    assert src.ids[:3] == ["class_0/bad_empty.jpg", "class_0/bad_text.jpg", "class_0/bad_truncated.jpg"]
    order = [6, 0, 5, 2, 3, 1, 4]
    kept, excluded = screen_readable(src, order, threads=1)
    assert kept.dtype == np.int64 and kept.tolist() == [6, 5, 3, 4]
    assert [(i, name) for i, name, _ in excluded] == [(0, "class_0/bad_empty.jpg"), (2, "class_0/bad_truncated.jpg"),
                                                       (1, "class_0/bad_text.jpg")]  # fmt: skip
    assert all(reason and "\n" not in reason for _, _, reason in excluded)
    threaded = screen_readable(src, order, threads=4)
    assert threaded[0].tolist() == kept.tolist() and threaded[1] == excluded
    # the screened set evaluates without substitution; the unscreened one stops at the bad file
    ds = SimMIMValDataset(src, kept, EvalTransform(16), mask16)
    assert [ds[k]["index"] for k in range(4)] == [0, 1, 2, 3] and all(ds[k]["skipped"] == 0 for k in range(4))
    bad = SimMIMValDataset(src, [4, 0], EvalTransform(16), mask16)
    assert bad[0]["skipped"] == 0
    with pytest.raises(DataError, match="unreadable image in the validation set: .*bad_empty.jpg") as e:
        bad[1]
    assert str(folder / "class_0" / "bad_empty.jpg") in str(e.value) and "\n" not in str(e.value)


def test_screen_readable_errors_and_in_memory_sources(tmp_path, helpers):
    d = tmp_path / "bad"
    d.mkdir()
    helpers.add_corrupt_files(d)
    src = build_source(d)
    with pytest.raises(
        DataError, match=r"no image of the held-out set is readable \(3 files; e.g. bad_empty.jpg"
    ):
        screen_readable(src, [0, 1, 2])
    with pytest.raises(DataError, match="the held-out set is empty"):
        screen_readable(src, [])
    shapes = build_source("shapes:size=8,pool=10")
    kept, excluded = screen_readable(shapes, np.arange(10)[::-1])
    assert kept.tolist() == list(range(9, -1, -1)) and excluded == []


def test_plan_then_screen_a_folder_holdout(tmp_path, helpers):
    folder = helpers.make_folder(tmp_path / "imgs", classes=2, per_class=10)
    plan = plan_data(f"folder:{folder}", fraction=1.0, holdout=0.5)  # lists, does not decode
    assert plan.val_indices.tolist() == [2, 3, 7, 8, 9, 10, 14, 15, 16, 18]
    (folder / plan.source.ids[3]).write_bytes(b"broken")
    kept, excluded = screen_readable(plan.val_source, plan.val_indices)
    assert kept.tolist() == [2, 7, 8, 9, 10, 14, 15, 16, 18]
    assert excluded == [(3, "class_0/img_003.jpg", excluded[0][2])] and "cannot identify" in excluded[0][2]


# --- 4: impossible sizes and crop bounds -------------------------------------------------------------
@pytest.mark.parametrize("size", [0, -3, 2.5, True, "32", None])
def test_bad_image_size_is_a_one_line_data_error_at_construction(size):
    for cls in (TrainTransform, EvalTransform):
        with pytest.raises(DataError) as e:
            cls(size)
        assert str(e.value) == f"img_size must be a positive integer, got {size!r}"


def test_integral_sizes_are_accepted():
    assert TrainTransform(np.int64(16)).size == 16 and EvalTransform(16.0).size == 16
    assert EvalTransform(16, resize=0).resize == 16  # 0 / None: resize = size
    with pytest.raises(DataError, match=r"eval resize \(8\) must be >= img_size \(16\)"):
        EvalTransform(16, resize=8)
    with pytest.raises(DataError, match="eval resize must be a positive integer, got -4"):
        EvalTransform(16, resize=-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scale": (0.9, 0.5)}, "crop_scale lower bound exceeds upper bound: (0.9, 0.5)"),
        ({"scale": (0.0, 1.0)}, "crop_scale must lie in (0, 1], got (0, 1)"),
        ({"scale": (0.5, 1.5)}, "crop_scale must lie in (0, 1], got (0.5, 1.5)"),
        ({"scale": (-0.2, 0.5)}, "crop_scale must lie in (0, 1], got (-0.2, 0.5)"),
        ({"scale": (0.5,)}, "crop_scale must be two numbers (lo, hi), got (0.5,)"),
        ({"scale": (float("nan"), 1.0)}, "crop_scale must be finite, got (nan, 1)"),
        ({"ratio": (2.0, 1.0)}, "crop_ratio lower bound exceeds upper bound: (2, 1)"),
        ({"ratio": (0.0, 1.0)}, "crop_ratio must be > 0, got (0, 1)"),
        ({"ratio": (-1.0, 1.0)}, "crop_ratio must be > 0, got (-1, 1)"),
        ({"ratio": (1.0, float("inf"))}, "crop_ratio must be finite, got (1, inf)"),
        ({"ratio": "wide"}, "crop_ratio must be two numbers (lo, hi), got 'wide'"),
    ],
)
def test_bad_crop_bounds_are_one_line_data_errors(kwargs, message):
    with pytest.raises(DataError) as e:
        TrainTransform(16, **kwargs)
    assert str(e.value) == message


def test_valid_crop_bounds_still_accepted():
    t = TrainTransform(16, scale=[1.0, 1.0], ratio=[1, 1])
    assert t.scale == (1.0, 1.0) and t.ratio == (1.0, 1.0)
    assert isinstance(FolderSource, type)  # the folder class stays importable from the package
