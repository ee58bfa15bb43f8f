"""WebDataset tar shards: map-style index, damaged samples, pre-training from shards through `mimscale
pretrain`."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from mimscale.cli import main
from mimscale.data import (
    DataError,
    ShardSource,
    SimMIMDataset,
    TrainTransform,
    build_source,
    load_manifest,
    make_subsets,
    write_shards,
)
from mimscale.rundir import RunDir


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
    ds = SimMIMDataset(s, np.arange(len(s)), TrainTransform(16), mask16, seed=0)
    batch = ds.__getitems__([(k, 0, k) for k in range(len(s))])
    assert torch.isfinite(batch["img"]).all() and batch["img"].shape == (len(s), 3, 16, 16)
    assert int(batch["skipped"].sum()) == 3  # each unreadable image replaced by a readable neighbour, counted


def test_pretrain_reads_shards_through_the_command_line(shards, tmp_path, capsys):
    d, _ = shards
    run = tmp_path / "run"
    args = ["model.name=vit-cpu-s", f"data.source=shards:{d}/train-{{000..004}}.tar", "data.img_size=16",
            "data.val_size=8", "data.probe_size=8", "train.batch_size=8", "train.iters=2", "train.eval_points=1",
            "train.eval_budget=0", "train.recon_images=0", "threads=1", f"run_dir={run}"]
    assert main(["pretrain", *args]) == 0, capsys.readouterr().err
    rd = RunDir(run)
    summary, subset = rd.read_summary(), load_manifest(rd.subset)  # subset.json is a reference to its ids
    assert summary["status"] == "done" and np.isfinite(summary["final_val_loss"])
    assert subset.source["kind"] == "shards" and summary["data_size"] == len(subset.ids)
    assert all(i.startswith("train-00") and ".tar/s" in i for i in subset.ids)


def test_shard_errors(tmp_path):
    with pytest.raises(DataError, match="shard not found"):
        ShardSource(str(tmp_path / "x-{0..2}.tar"))
    with tarfile.open(tmp_path / "empty.tar", "w"):
        pass
    with pytest.raises(DataError, match="no image samples"):
        len(ShardSource(str(tmp_path / "empty.tar")))
