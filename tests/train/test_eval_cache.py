"""The held-out and probe batches are decoded once and reused, and equal the streamed ones."""

import torch
from omegaconf import OmegaConf

from mimscale.config import Config
from mimscale.train import inputs as I


def _inputs(tmp_path):
    cfg = OmegaConf.structured(Config())
    cfg.data.source = "shapes:size=32,pool=64,seed=0,val_pool=40"
    cfg.data.img_size, cfg.data.mask_patch_size, cfg.data.val_size, cfg.data.probe_size = 32, 8, 40, 24
    tmp_path.mkdir()
    return I.RunInputs(cfg, 8, 0, 1, tmp_path, 4)


def _flat(batches):
    imgs, masks = zip(*batches)
    return torch.cat(imgs), torch.cat(masks)


class _Counting:
    """Wraps a loader and counts the batches drawn from it."""

    def __init__(self, loader):
        self.loader, self.batches = loader, 0

    def __iter__(self):
        for batch in self.loader:
            self.batches += 1
            yield batch


def test_eval_batches_cached_once_and_equal_to_streamed(tmp_path, monkeypatch):
    cached = _inputs(tmp_path / "a")
    cached.val_loader = counter = _Counting(cached.val_loader)
    first = _flat(cached.val_batches())
    second = _flat(cached.val_batches())
    assert counter.batches == 1  # 40 images in one eval batch, drawn once: the second pass decodes nothing
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert cached.eval_images == 64

    monkeypatch.setattr(I, "EVAL_CACHE_BYTES", 0)  # too big to keep: streamed at every evaluation
    streamed = _inputs(tmp_path / "b")
    streamed.val_loader = counter = _Counting(streamed.val_loader)
    again = _flat(streamed.val_batches())
    _flat(streamed.val_batches())
    assert counter.batches == 2
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert torch.equal(_flat(cached.probe_batches())[0], _flat(streamed.probe_batches())[0])
