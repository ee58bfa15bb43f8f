"""Pre-training and validation loaders: resumable infinite sampler, SimMIM datasets, DataLoader glue.

Determinism contract. Every random choice of a training sample (crop box, flip, mask) comes from a
generator seeded with ``(seed, epoch, position)``, where ``position`` is the sample's place in the
epoch's global permutation. Nothing depends on worker processes, batch order or worker RNG state,
so (a) any number of workers yields identical batches, (b) resuming from a saved sampler state
reproduces the uninterrupted run exactly, (c) for a fixed global batch the union of the ranks'
batches does not depend on the world size. Validation masks are ``validation_mask(mask_seed, k)``
with ``k`` the image's position in the held-out list: fixed per image, for every run and step.

Training loop usage::

    sampler = ResumableSampler(len(ds), seed=cfg.seed, batch_size=B, rank=rank, world_size=W)
    loader = build_pretrain_loader(ds, sampler, num_workers=4)
    if resuming:
        loader.load_state_dict(ckpt["data"])      # before the first next()
    for step in range(start, total):
        batch = next(loader)                      # {"img", "mask", "skipped", "epoch", "position"}
        ...
        ckpt["data"] = loader.state_dict()        # position after the batches *consumed* so far
        metrics["data/skipped"] = loader.skipped  # unreadable files replaced so far (this process)

Held-out sets are screened once, when they are built: ``kept, excluded = screen_readable(source,
indices)`` (one decode per image) drops the unreadable files and names them; ``SimMIMValDataset``
then never replaces an image (an unreadable one raises DataError), so every evaluation sees the
same images.

``loader.state_dict()`` counts batches handed to the training loop, not batches prefetched by the
workers, so it is safe to save at any step.
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mimscale.errors import DataError

from .sources import FolderSource
from .transforms import _decode

log = logging.getLogger("mimscale.data")

_PERM_STREAM = 0x5A3B_1E01  # epoch permutations
_SAMPLE_STREAM = 0x5A3B_1E02  # per-sample augmentation and mask
_MAX_CONSECUTIVE_BAD = 1000


class ResumableSampler:
    """Infinite, iteration-based batch sampler with exact resume and DDP rank slicing.

    Epoch ``e`` visits ``permutation(e)`` (seeded by ``(seed, e)``) in global batches of
    ``batch_size * world_size`` consecutive entries; rank ``r`` takes entries ``[r*B, (r+1)*B)`` of
    each global batch. ``drop_last=True`` drops an epoch's incomplete last global batch;
    ``drop_last=False`` pads it with the start of the same permutation, so every rank always gets
    full batches. Each yielded batch is a list of ``(pos, epoch, position)`` tuples: ``pos`` indexes
    the dataset, ``position`` is the entry's place in the epoch (seeds the sample's randomness).

    State: ``{"epoch", "offset"}`` with ``offset`` = global samples consumed in ``epoch``. The sampler
    itself keeps the *start* state of the next ``iter()``; the loader tracks consumed batches.
    """

    def __init__(self, n: int, seed: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 drop_last: bool = True):  # fmt: skip
        if n <= 0:
            raise DataError("cannot sample from an empty dataset")
        if batch_size <= 0 or world_size <= 0 or not 0 <= rank < world_size:
            raise DataError(
                f"bad sampler geometry batch_size={batch_size} rank={rank} world_size={world_size}"
            )
        self.n, self.seed, self.batch_size = int(n), int(seed), int(batch_size)
        self.rank, self.world_size, self.drop_last = int(rank), int(world_size), bool(drop_last)
        if self.drop_last and self.n < self.global_batch:
            raise DataError(
                f"dataset has {n} images, fewer than one global batch ({batch_size} x {world_size} ranks)"
            )
        self.epoch, self.offset = 0, 0

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def batches_per_epoch(self) -> int:
        g = self.global_batch
        return self.n // g if self.drop_last else math.ceil(self.n / g)

    def permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([_PERM_STREAM, self.seed, int(epoch)]).permutation(self.n)

    def _normalise(self, epoch: int, offset: int) -> tuple[int, int]:
        end = self.n - self.global_batch if self.drop_last else self.n - 1
        return (epoch + 1, 0) if offset > end else (epoch, offset)

    def advance(self, state: dict, batches: int = 1) -> dict:
        """The state after ``batches`` more batches from ``state`` (pure)."""
        epoch, offset = self._normalise(int(state["epoch"]), int(state["offset"]))
        for _ in range(batches):
            epoch, offset = self._normalise(epoch, offset + self.global_batch)
        return {"epoch": epoch, "offset": offset}

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state_dict(self, state: dict) -> None:
        epoch, offset = int(state["epoch"]), int(state["offset"])
        if epoch < 0 or not 0 <= offset <= self.n:
            raise DataError(f"bad sampler state {state} for a dataset of {self.n} images")
        self.epoch, self.offset = self._normalise(epoch, offset)

    def __iter__(self):
        epoch, offset = self._normalise(self.epoch, self.offset)
        perm = self.permutation(epoch)
        lo = self.rank * self.batch_size
        while True:
            positions = range(offset + lo, offset + lo + self.batch_size)
            yield [(int(perm[p % self.n]), epoch, p) for p in positions]
            new_epoch, offset = self._normalise(epoch, offset + self.global_batch)
            if new_epoch != epoch:
                epoch = new_epoch
                perm = self.permutation(epoch)


class MaskGeneratorLike(Protocol):
    """What the datasets need of ``mimscale.masking.MaskGenerator`` (masking sits above data in the layering,
    so data names the interface instead of importing the class)."""

    input_size: int

    def __call__(self, rng: np.random.Generator) -> np.ndarray: ...

    def validation_mask(self, seed: int, index: int) -> np.ndarray: ...


class _MaskedImages(Dataset):
    """Shared machinery: load + transform with skip-and-count, per-sample and batched fetch.

    The DataLoader fetches whole batches through ``__getitems__``: images stay uint8 until the batch
    is stacked, then one fused normalisation runs over the batch (identical numbers to per-item
    ``__getitem__``, far less per-sample overhead at small image sizes).
    """

    replace_unreadable = True  # False: an unreadable file raises DataError (screened sets)

    def __init__(self, source, indices, transform, mask_generator: MaskGeneratorLike, what: str):
        self.what = what
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        if len(self.indices) == 0:
            raise DataError(f"the {what} is empty")
        if mask_generator.input_size != transform.size:
            raise DataError(f"mask input_size {mask_generator.input_size} != transform size {transform.size}")
        self.transform, self.mask_generator = transform, mask_generator
        self._deferred = hasattr(transform, "crop_resize") and hasattr(transform, "normalize")
        self._warned: set[int] = set()

    def __len__(self) -> int:
        return len(self.indices)

    def _image(self, pos: int, rng: np.random.Generator, rng_seed: list) -> tuple[torch.Tensor, int]:
        """indices[pos] loaded and transformed (uint8 when deferred); an unreadable file is replaced
        by the next one in ``indices``. Returns (image, 1 if the drawn file was unreadable else 0): a
        corrupt file counts once each time it is drawn, however many neighbours had to be tried."""
        fn = self.transform.crop_resize if self._deferred else self.transform
        n = len(self.indices)
        for attempt in range(min(n, _MAX_CONSECUTIVE_BAD)):
            idx = int(self.indices[(pos + attempt) % n])
            if attempt:  # a fresh, deterministic stream for the substitute
                rng = np.random.default_rng(rng_seed + [attempt])
            try:
                if hasattr(self.source, "load_array"):
                    return fn(self.source.load_array(idx), rng), int(attempt > 0)
                img = self.source.load(idx)
                try:
                    return fn(img, rng), int(attempt > 0)
                finally:
                    img.close()
            except Exception as e:  # noqa: BLE001  any decoding failure: skip the file, count it
                if not self.replace_unreadable:
                    raise DataError(f"unreadable image in the {self.what}: {_where(self.source, idx)}: "
                                    f"{_reason(e)} (screen the set with screen_readable when it is built)") from None  # fmt: skip
                if idx not in self._warned:
                    self._warned.add(idx)
                    reason = " ".join(str(e).split())
                    log.warning("skipping unreadable image %s: %s", self.source.ids[idx], reason)
        raise DataError(f"no readable image among {min(n, _MAX_CONSECUTIVE_BAD)} consecutive files")

    def _sample(self, key) -> dict:
        raise NotImplementedError

    def __getitem__(self, key) -> dict:
        out = self._sample(key)
        if self._deferred:
            out["img"] = self.transform.normalize(out["img"])
        return out

    def __getitems__(self, keys) -> dict:
        out = collate([self._sample(k) for k in keys])
        if self._deferred:
            out["img"] = self.transform.normalize(out["img"])
        return out


class SimMIMDataset(_MaskedImages):
    """Pre-training samples ``{"img": float (3,S,S), "mask": uint8 (h,w), "skipped", "epoch", "position"}``.

    ``indices``: the training subset as indices into ``source``. Keys are ``(pos, epoch, position)``
    tuples from ``ResumableSampler`` (a bare int ``pos`` means epoch 0, position ``pos``). The mask,
    crop and flip come from a generator seeded with ``(seed, epoch, position)``. An unreadable file
    is replaced by the next readable one in ``indices`` (deterministically) and counted in
    ``"skipped"``; a warning is logged once per file and process.
    """

    def __init__(self, source, indices, transform, mask_generator: MaskGeneratorLike, seed: int = 0):
        super().__init__(source, indices, transform, mask_generator, "training subset")
        self.seed = int(seed)

    def _sample(self, key) -> dict:
        pos, epoch, position = key if isinstance(key, tuple) else (int(key), 0, int(key))
        seed = [_SAMPLE_STREAM, self.seed, int(epoch), int(position)]
        rng = np.random.default_rng(seed)
        mask = self.mask_generator(rng)  # first, so a substituted image never shifts the mask
        img, skipped = self._image(int(pos), rng, seed)
        return {"img": img, "mask": torch.from_numpy(mask), "skipped": skipped, "epoch": epoch,
                "position": position}  # fmt: skip


class SimMIMValDataset(_MaskedImages):
    """Validation samples ``{"img", "mask", "index", "skipped"}``; item ``k`` is ``indices[k]`` with the
    fixed mask ``mask_generator.validation_mask(mask_seed, k)``. Keep ``indices`` in a stable order
    (source order) so ``k`` names the same image in every run.

    Images are never replaced: pass indices screened by ``screen_readable``; an unreadable file
    raises DataError naming its path (``"skipped"`` is always 0, kept for the batch layout)."""

    replace_unreadable = False

    def __init__(self, source, indices, transform, mask_generator: MaskGeneratorLike, mask_seed: int = 0,
                 what: str = "validation set"):  # fmt: skip
        super().__init__(source, indices, transform, mask_generator, what)
        self.mask_seed = int(mask_seed)

    def _sample(self, k) -> dict:
        k = int(k)
        mask = self.mask_generator.validation_mask(self.mask_seed, k)
        seed = [_SAMPLE_STREAM, self.mask_seed, 2**32 - 1, k]  # only used if the transform is random
        img, skipped = self._image(k, np.random.default_rng(seed), seed)
        return {"img": img, "mask": torch.from_numpy(mask), "index": k, "skipped": skipped}


def _reason(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _where(source, idx: int) -> str:
    """A file's path when the source has files, else its id."""
    path = getattr(source, "path", None)
    return str(path(idx)) if callable(path) else str(source.ids[idx])


def _unreadable(source, idx: int) -> str | None:
    """None when image ``idx`` of ``source`` decodes to RGB (the evaluation path, full resolution);
    else the reason, one line."""
    try:
        img = source.load(idx)
        try:
            x, _, keep = _decode(img, None, (img.size[1], img.size[0]), False)
            del x, keep
        finally:
            img.close()
    except Exception as e:  # noqa: BLE001  any failure to open or decode makes the file unreadable
        return _reason(e)
    return None


def screen_readable(source, indices, what: str = "held-out set",
                    threads: int | None = None) -> tuple[np.ndarray, list[tuple[int, str, str]]]:  # fmt: skip
    """Drop the unreadable images of a set once, when it is built: ``(kept, excluded)``.

    ``kept``: int64 array, the entries of ``indices`` whose image decodes, in their given order.
    ``excluded``: ``[(index, id, reason), ...]`` for the others, in the same order (``index`` a source
    index, ``id`` = ``source.ids[index]``, for a folder its path relative to the root; ``reason``
    the decoder's message, one line).

    Cost: one full decode per image for file sources (folders, shards), about 1 ms per 500x375 JPEG
    on one core (so about a minute of CPU for 50,000 of them, plus reading the files), run on
    ``threads`` threads (PIL decodes without the GIL; default ``min(8, cpu count)`` for a
    ``FolderSource``, 1 for other sources, whose ``load`` need not be thread-safe). Sources with
    ``load_array`` (in memory or generated) are never unreadable and are not decoded.
    Deterministic: every rank gets the same answer.
    Raises DataError when ``indices`` is empty or no image is readable.
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(idx) == 0:
        raise DataError(f"the {what} is empty")
    if hasattr(source, "load_array"):
        return idx.copy(), []
    if threads is None:
        threads = min(8, os.cpu_count() or 1) if isinstance(source, FolderSource) else 1
    workers = max(1, int(threads))
    items = idx.tolist()
    if workers == 1 or len(items) < 2:
        reasons = [_unreadable(source, i) for i in items]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            reasons = list(pool.map(lambda i: _unreadable(source, i), items, chunksize=64))
    excluded = [(i, str(source.ids[i]), r) for i, r in zip(items, reasons) if r is not None]
    kept = np.asarray([i for i, r in zip(items, reasons) if r is None], dtype=np.int64)
    if len(kept) == 0:
        i, name, reason = excluded[0]
        raise DataError(f"no image of the {what} is readable ({len(items)} files; e.g. {name}: {reason})")
    if excluded:
        log.warning("excluded %d unreadable images of the %s (e.g. %s: %s)", len(excluded), what,
                    excluded[0][1], excluded[0][2])  # fmt: skip
    return kept, excluded


def collate(samples) -> dict:
    """Stack tensors, turn ints into int64 tensors; an already collated batch passes through."""
    if isinstance(samples, dict):
        return samples
    out = {}
    for key, first in samples[0].items():
        if isinstance(first, torch.Tensor):
            out[key] = torch.stack([s[key] for s in samples])
        else:
            out[key] = torch.tensor([s[key] for s in samples], dtype=torch.int64)
    return out


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)  # workers do per-sample work; intra-op threads only oversubscribe


class PretrainLoader:
    """An infinite iterator of training batches with ``state_dict``/``load_state_dict``.

    ``state_dict()`` is the sampler state after the batches returned by ``next()`` so far (not the
    workers' prefetch position); ``load_state_dict()`` restarts the stream from such a state.
    ``skipped`` sums the unreadable files replaced in the batches returned so far.
    """

    def __init__(self, dataloader: DataLoader, sampler: ResumableSampler):
        self.dataloader, self.sampler = dataloader, sampler
        self._state = sampler.advance(sampler.state_dict(), 0)
        self._it = None
        self.skipped = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._it is None:
            self._it = iter(self.dataloader)
        batch = next(self._it)
        self._state = self.sampler.advance(self._state, 1)
        self.skipped += int(batch["skipped"].sum())
        return batch

    def state_dict(self) -> dict:
        return dict(self._state)

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)
        self._state = self.sampler.state_dict()
        self._it = None  # the next next() restarts the (persistent) workers from the new state

    @property
    def epoch(self) -> int:
        return self._state["epoch"]


def _loader_kwargs(num_workers: int, pin_memory: bool | None, prefetch_factor: int) -> dict:
    kw = {"num_workers": int(num_workers), "collate_fn": collate,
          "pin_memory": torch.cuda.is_available() if pin_memory is None else pin_memory,
          # A private generator: creating a DataLoader iterator draws a base seed, and drawing it from the
          # global RNG would shift the training loop's stream (drop path) and break bit-exact resume.
          "generator": torch.Generator()}  # fmt: skip
    if num_workers > 0:
        kw.update(persistent_workers=True, prefetch_factor=prefetch_factor, worker_init_fn=_worker_init)
    return kw


def build_pretrain_loader(dataset: SimMIMDataset, sampler: ResumableSampler, num_workers: int = 0,
                          pin_memory: bool | None = None, prefetch_factor: int = 2) -> PretrainLoader:  # fmt: skip
    """Multi-worker (or in-process with 0 workers) infinite loader; see the module docstring."""
    if sampler.n != len(dataset):
        raise DataError(f"sampler covers {sampler.n} samples but the dataset has {len(dataset)}")
    dl = DataLoader(
        dataset, batch_sampler=sampler, **_loader_kwargs(num_workers, pin_memory, prefetch_factor)
    )
    return PretrainLoader(dl, sampler)


def build_val_loader(dataset: Dataset, batch_size: int, num_workers: int = 0, rank: int = 0, world_size: int = 1,
                     pin_memory: bool | None = None) -> DataLoader:  # fmt: skip
    """A finite, ordered loader over rank ``rank``'s share (items ``rank::world_size``) of ``dataset``.

    Shares differ by at most one item, so ranks may run a different number of batches: reduce
    *sums* (loss x masked pixels, masked pixels) across ranks, not per-batch means. Build it once
    and iterate it at every evaluation (its workers persist).
    """
    mine = list(range(rank, len(dataset), world_size))
    batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
    return DataLoader(dataset, batch_sampler=batches, **_loader_kwargs(num_workers, pin_memory, 2))
