"""Fixtures for the data-layer tests: small JPEG folders, corrupted files, a tiny mask generator."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mimscale.masking import MaskGenerator


def jpeg_bytes(seed: int, w: int = 64, h: int = 48, quality: int = 90) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def make_folder(root, classes: int = 3, per_class: int = 4, w: int = 64, h: int = 48):
    """root/<class>/<i>.jpg, distinct content per file."""
    for c in range(classes):
        d = root / f"class_{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (d / f"img_{i:03d}.jpg").write_bytes(jpeg_bytes(100 * c + i, w, h))
    return root


def add_corrupt_files(folder) -> list[str]:
    """A truncated JPEG, a zero-byte file and a text file, all named .jpg; returns their names."""
    good = jpeg_bytes(999, 64, 48)
    (folder / "bad_truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "bad_empty.jpg").write_bytes(b"")
    (folder / "bad_text.jpg").write_text("this is not an image\n")
    return ["bad_truncated.jpg", "bad_empty.jpg", "bad_text.jpg"]


@pytest.fixture
def image_folder(tmp_path):
    return make_folder(tmp_path / "imgs")


@pytest.fixture
def mask16():
    return MaskGenerator(input_size=16, mask_patch_size=4, model_patch_size=2, mask_ratio=0.6)


@pytest.fixture
def helpers():
    """The helper functions above, for tests (conftest modules are not importable by name)."""

    class H:
        pass

    h = H()
    h.jpeg_bytes, h.make_folder, h.add_corrupt_files = jpeg_bytes, make_folder, add_corrupt_files
    return h
