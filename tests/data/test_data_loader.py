"""Sampler, datasets and loaders: exact resume, worker/rank invariance, fixed validation masks,
corrupted files skipped and counted."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from mimscale.data import (
    DataError,
    EvalTransform,
    ResumableSampler,
    SimMIMDataset,
    SimMIMValDataset,
    TrainTransform,
    build_pretrain_loader,
    build_source,
    build_val_loader,
    screen_readable,
)


@pytest.fixture(scope="module")
def shapes16():
    return build_source("shapes:size=16,pool=40,seed=1,val_pool=23")


def _train_ds(src, mask16, seed=0):
    return SimMIMDataset(src, np.arange(len(src)), TrainTransform(16), mask16, seed=seed)


def test_sampler_epochs_are_permutations_and_ranks_partition_global_batches():
    n, b, ws = 50, 4, 3
    samplers = [ResumableSampler(n, seed=7, batch_size=b, rank=r, world_size=ws) for r in range(ws)]
    its = [iter(s) for s in samplers]
    per_epoch = n // (b * ws)  # 4 global batches, 2 images dropped
    assert samplers[0].batches_per_epoch == per_epoch
    for epoch in range(3):
        seen = []
        for k in range(per_epoch):
            batches = [next(it) for it in its]
            positions = [p for batch in batches for (_, e, p) in batch]
            assert positions == list(range(k * b * ws, (k + 1) * b * ws))  # consecutive, rank-sliced
            assert all(e == epoch for batch in batches for (_, e, _) in batch)
            seen += [i for batch in batches for (i, _, _) in batch]
        assert len(set(seen)) == len(seen) == per_epoch * b * ws
        perm = samplers[0].permutation(epoch)
        assert seen == perm[: len(seen)].tolist()
    assert not np.array_equal(samplers[0].permutation(0), samplers[0].permutation(1))


def test_sampler_without_drop_last_pads_with_the_epoch_start():
    s = ResumableSampler(10, seed=0, batch_size=4, drop_last=False)
    it = iter(s)
    batches = [next(it) for _ in range(4)]
    perm0 = s.permutation(0).tolist()
    assert [i for i, _, _ in batches[2]] == perm0[8:] + perm0[:2]
    assert {e for _, e, _ in batches[3]} == {1}
    assert s.advance({"epoch": 0, "offset": 0}, 3) == {"epoch": 1, "offset": 0}


def test_sampler_state_and_errors():
    s = ResumableSampler(20, seed=0, batch_size=4)
    assert s.advance({"epoch": 0, "offset": 0}, 7) == {"epoch": 1, "offset": 8}
    s.load_state_dict({"epoch": 1, "offset": 8})
    first = next(iter(s))
    assert [p for _, _, p in first] == [8, 9, 10, 11] and first[0][1] == 1
    with pytest.raises(DataError, match="fewer than one global batch"):
        ResumableSampler(7, seed=0, batch_size=4, world_size=2)
    with pytest.raises(DataError, match="empty"):
        ResumableSampler(0, seed=0, batch_size=4)
    with pytest.raises(DataError, match="bad sampler state"):
        s.load_state_dict({"epoch": 0, "offset": 99})


def _take(loader, k):
    return [next(loader) for _ in range(k)]


def _assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x["img"], y["img"]) and torch.equal(x["mask"], y["mask"])
        assert torch.equal(x["position"], y["position"]) and torch.equal(x["epoch"], y["epoch"])


def test_resumed_loader_yields_exactly_the_uninterrupted_batches(shapes16, mask16):
    ds = _train_ds(shapes16, mask16)
    ref = _take(build_pretrain_loader(ds, ResumableSampler(40, 3, 8), num_workers=2), 12)  # crosses 2 epochs
    assert {int(b["epoch"][0]) for b in ref} == {0, 1, 2}

    first = build_pretrain_loader(ds, ResumableSampler(40, 3, 8), num_workers=2)
    part1 = _take(first, 7)
    state = first.state_dict()  # workers have prefetched beyond batch 7: the state must not see that
    assert state == {"epoch": 1, "offset": 16}
    del first
    resumed = build_pretrain_loader(ds, ResumableSampler(40, 3, 8), num_workers=1)
    resumed.load_state_dict(state)
    _assert_same_batches(part1 + _take(resumed, 5), ref)
    # in-process, reloading mid-stream also works
    loader = build_pretrain_loader(ds, ResumableSampler(40, 3, 8), num_workers=0)
    _take(loader, 3)
    loader.load_state_dict(state)
    _assert_same_batches(_take(loader, 5), ref[7:])


def test_training_batches_do_not_depend_on_workers_or_world_size(shapes16, mask16):
    ds = _train_ds(shapes16, mask16)
    solo = _take(build_pretrain_loader(ds, ResumableSampler(40, 0, 8), num_workers=0), 6)
    _assert_same_batches(_take(build_pretrain_loader(ds, ResumableSampler(40, 0, 8), num_workers=2), 6), solo)
    ranks = [build_pretrain_loader(ds, ResumableSampler(40, 0, 4, rank=r, world_size=2)) for r in range(2)]
    for k in range(6):
        parts = [next(r) for r in ranks]
        assert torch.equal(torch.cat([p["img"] for p in parts]), solo[k]["img"])
        assert torch.equal(torch.cat([p["mask"] for p in parts]), solo[k]["mask"])
    b = solo[0]
    assert b["img"].shape == (8, 3, 16, 16) and b["img"].dtype == torch.float32
    assert b["mask"].shape == (8, 8, 8) and b["mask"].dtype == torch.uint8
    assert (b["mask"].flatten(1).sum(1) == 10 * 4).all()  # ceil(16 * 0.6) = 10 units of 2x2 tokens
    assert int(b["skipped"].sum()) == 0


def test_fresh_masks_and_crops_per_draw(shapes16, mask16):
    ds = _train_ds(shapes16, mask16)
    a, b = ds[(5, 0, 0)], ds[(5, 1, 0)]  # same image, other epoch
    assert not torch.equal(a["mask"], b["mask"]) or not torch.equal(a["img"], b["img"])
    assert torch.equal(ds[(5, 0, 0)]["img"], a["img"])
    other_seed = _train_ds(shapes16, mask16, seed=1)[(5, 0, 0)]
    assert not torch.equal(other_seed["img"], a["img"]) or not torch.equal(other_seed["mask"], a["mask"])


def _val_masks(ds, workers, world):
    out = {}
    for rank in range(world):
        for batch in build_val_loader(ds, batch_size=5, num_workers=workers, rank=rank, world_size=world):
            for k, m, img in zip(batch["index"].tolist(), batch["mask"], batch["img"]):
                assert k not in out
                out[k] = (m, img)
    return out


def test_validation_masks_are_fixed_per_image(shapes16, mask16):
    val = shapes16.validation()
    ds = SimMIMValDataset(val, np.arange(len(val)), EvalTransform(16), mask16, mask_seed=11)
    ref = _val_masks(ds, 0, 1)
    assert sorted(ref) == list(range(23))
    for workers, world in [(1, 1), (2, 1), (0, 2), (2, 2)]:
        got = _val_masks(ds, workers, world)
        assert sorted(got) == sorted(ref)
        for k in ref:
            assert torch.equal(got[k][0], ref[k][0]) and torch.equal(got[k][1], ref[k][1])
    for k in range(23):
        np.testing.assert_array_equal(ref[k][0].numpy(), mask16.validation_mask(11, k))
    assert len({ref[k][0].numpy().tobytes() for k in ref}) > 15  # masks differ between images


def test_corrupted_files_are_skipped_and_counted(tmp_path, helpers, mask16, caplog):
    folder = helpers.make_folder(tmp_path / "imgs", classes=1, per_class=6)
    bad = helpers.add_corrupt_files(folder / "class_0")
    src = build_source(folder)
    assert len(src) == 9
    bad_idx = [src.ids.index(f"class_0/{b}") for b in bad]
    for i in bad_idx:
        with pytest.raises(Exception):  # noqa: B017  each one really is unreadable
            TrainTransform(16)(src.load(i), np.random.default_rng(0))
    ds = SimMIMDataset(src, np.arange(9), TrainTransform(16), mask16)
    with caplog.at_level(logging.WARNING, logger="mimscale.data"):
        loader = build_pretrain_loader(ds, ResumableSampler(9, 0, 9), num_workers=0)
        batch = next(loader)
    assert loader.skipped == 3 and int(batch["skipped"].sum()) == 3
    assert torch.isfinite(batch["img"]).all() and batch["img"].abs().sum() > 0
    assert sum("skipping unreadable image" in r.message for r in caplog.records) == 3
    # with worker processes the counts come back in the batches
    loader = build_pretrain_loader(ds, ResumableSampler(9, 0, 3), num_workers=2)
    _take(loader, 6)  # two epochs
    assert loader.skipped == 6
    # validation: screened once when built, never substituted
    kept, excluded = screen_readable(src, np.arange(9))
    assert kept.tolist() == [i for i in range(9) if i not in bad_idx]
    assert [(i, name) for i, name, _ in excluded] == sorted((i, src.ids[i]) for i in bad_idx)
    vds = SimMIMValDataset(src, kept, EvalTransform(16), mask16)
    batches = list(build_val_loader(vds, 4, num_workers=2))
    assert sum(len(b["index"]) for b in batches) == 6 and sum(int(b["skipped"].sum()) for b in batches) == 0
    unscreened = SimMIMValDataset(src, np.arange(9), EvalTransform(16), mask16)
    with pytest.raises(DataError, match="unreadable image in the validation set: .*bad_") as e:
        [unscreened[k] for k in range(9)]
    assert str(folder / "class_0") in str(e.value) and "\n" not in str(e.value)


def test_all_files_unreadable_is_a_data_error(tmp_path, helpers, mask16):
    d = tmp_path / "bad"
    d.mkdir()
    helpers.add_corrupt_files(d)
    ds = SimMIMDataset(build_source(d), np.arange(3), TrainTransform(16), mask16)
    with pytest.raises(DataError, match="no readable image"):
        ds[0]


def test_dataset_errors(shapes16, mask16):
    with pytest.raises(DataError, match="empty"):
        SimMIMDataset(shapes16, [], TrainTransform(16), mask16)
    with pytest.raises(DataError, match="input_size"):
        SimMIMDataset(shapes16, [0], TrainTransform(32), mask16)
    with pytest.raises(DataError, match="sampler covers"):
        build_pretrain_loader(_train_ds(shapes16, mask16), ResumableSampler(10, 0, 2))
