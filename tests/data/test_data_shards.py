"""WebDataset tar shards: map-style index, streaming split across ranks and workers, damaged
samples, exact resume, subset filtering."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from mimscale.data import (
    DataError,
    ShardSource,
    TrainTransform,
    build_source,
    build_stream_loader,
    make_subsets,
    write_shards,
)
from mimscale.data.shards import ShardStream, _Counter


def _jpeg(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """40 labelled shapes images as JPEGs in 5 shards of 8 (+ the source arrays)."""
    d = tmp_path_factory.mktemp("shards")
    src = build_source("shapes:size=16,pool=40,seed=2")
    samples = ((f"s{i:04d}", _jpeg(src.images[i]), "jpg", src.label(i)) for i in range(40))
    paths = write_shards(samples, str(d / "train-%03d.tar"), maxcount=8)
    assert len(paths) == 5
    return d, src


def test_map_style_index(shards):
    d, src = shards
    s = build_source(f"shards:{d}/train-{{000..004}}.tar")
    assert isinstance(s, ShardSource) and len(s) == 40
    assert s.ids[:2] == ["train-000.tar/s0000", "train-000.tar/s0001"] and s.ids[8] == "train-001.tar/s0008"
    np.testing.assert_array_equal(s.labels(), src.labels())
    assert s.num_classes == 10
    img = np.asarray(s.load(17).convert("RGB")).astype(int)
    dists = np.abs(img[None] - src.images.astype(int)).mean(axis=(1, 2, 3))
    assert int(dists.argmin()) == 17 and dists[17] < 12  # the (lossy, 16 px) JPEG of image 17
    assert build_source(s.describe()).ids == s.ids
    ms = make_subsets(s, [0.5], seed=0, holdout=None)
    assert ms[0].per_class == {str(c): 2 for c in range(10)}


def _epoch_ids(source, g, n_readers, seed=0, epoch=0):
    stream = ShardStream(source, None, None, batch_size=1, seed=seed, shuffle_buffer=4)
    return [
        f"{s['__url__'].rsplit('/', 1)[-1]}/{s['__key__']}"
        for s in stream._emitted(g, n_readers, epoch, _Counter())
    ]


@pytest.mark.parametrize("n_readers", [1, 2, 4, 8])  # fewer and more readers than the 5 shards
def test_each_epoch_is_partitioned_among_readers(shards, n_readers):
    d, _ = shards
    s = ShardSource(f"{d}/train-{{000..004}}.tar")
    parts = [_epoch_ids(s, g, n_readers) for g in range(n_readers)]
    flat = [i for p in parts for i in p]
    assert sorted(flat) == sorted(s.ids)  # every sample once per epoch, no reader overlap
    if n_readers <= 5:
        assert all(p for p in parts)
    assert _epoch_ids(s, 0, n_readers, epoch=1) != parts[0] or n_readers >= 5  # reshuffled per epoch


def test_streaming_loader_with_workers_and_ranks(shards, mask16):
    d, _ = shards
    s = ShardSource(f"{d}/train-{{000..004}}.tar")
    seen = []
    for rank in range(2):
        loader = build_stream_loader(s, TrainTransform(16), mask16, batch_size=4, num_workers=2, rank=rank,
                                     world_size=2, shuffle_buffer=4)  # fmt: skip
        for _ in range(2):
            b = next(loader)
            assert b["img"].shape == (4, 3, 16, 16) and b["mask"].shape == (4, 8, 8)
            assert int(b["reader"]) // 2 == rank
            seen += b["ids"]
    assert len(set(seen)) == len(seen) == 16  # four readers, disjoint shards


def test_streaming_resume_is_exact(shards, mask16):
    d, _ = shards
    s = ShardSource(f"{d}/train-{{000..004}}.tar")

    def loader():
        return build_stream_loader(s, TrainTransform(16), mask16, batch_size=3, seed=5, num_workers=2,
                                   shuffle_buffer=5)  # fmt: skip

    ref = [next(x) for x in [loader()] for _ in range(15)]  # several epochs per reader
    first = loader()
    part = [next(first) for _ in range(7)]
    state = first.state_dict()
    assert state["batches"] == 7
    resumed = loader()
    resumed.load_state_dict(state)
    got = part + [next(resumed) for _ in range(8)]
    for a, b in zip(got, ref):
        assert a["ids"] == b["ids"]
        assert torch.equal(a["img"], b["img"]) and torch.equal(a["mask"], b["mask"])


def test_subset_ids_filter_the_stream(shards, mask16):
    d, _ = shards
    s = ShardSource(f"{d}/train-{{000..004}}.tar")
    keep = set(s.ids[::4])
    loader = build_stream_loader(s, TrainTransform(16), mask16, batch_size=5, ids=keep, shuffle_buffer=3)
    got = next(loader)["ids"] + next(loader)["ids"]
    assert sorted(got) == sorted(keep)


def test_damaged_samples_and_shards_are_skipped_and_counted(tmp_path, mask16, helpers):
    good = [(f"k{i}", helpers.jpeg_bytes(i, 24, 24), "jpg", i % 2) for i in range(6)]
    bad = [("bad0", b"", "jpg", 0), ("bad1", b"not a jpeg", "jpg", 1), ("bad2", good[0][1][:300], "jpg", 0)]
    write_shards(good[:3] + bad + good[3:], str(tmp_path / "a-%d.tar"), maxcount=100)
    # a second shard cut off in the middle of a member
    write_shards(good, str(tmp_path / "b-%d.tar"), maxcount=100)
    raw = (tmp_path / "b-0.tar").read_bytes()
    (tmp_path / "b-0.tar").write_bytes(raw[: len(raw) // 2 + 100])
    s = ShardSource(str(tmp_path / "{a,b}-0.tar"))
    assert 6 + 9 > len(s) >= 9  # the cut shard contributes its intact prefix
    loader = build_stream_loader(s, TrainTransform(16), mask16, batch_size=4, shuffle_buffer=1)
    batches = [next(loader) for _ in range(6)]
    assert all(torch.isfinite(b["img"]).all() for b in batches)
    assert not any(i.endswith(("bad0", "bad1", "bad2")) for b in batches for i in b["ids"])
    assert loader.skipped >= 3 * 2  # three unreadable images per pass, two passes at least


def test_shard_errors(tmp_path):
    with pytest.raises(DataError, match="shard not found"):
        ShardSource(str(tmp_path / "x-{0..2}.tar"))
    with tarfile.open(tmp_path / "empty.tar", "w"):
        pass
    with pytest.raises(DataError, match="no image samples"):
        len(ShardSource(str(tmp_path / "empty.tar")))
