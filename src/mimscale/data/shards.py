"""Tar shards in the WebDataset layout (``<key>.jpg`` + optional ``<key>.cls`` per sample).

Two ways to read them:
- map-style (``ShardSource.load(i)``): a one-time scan of the tar headers gives every sample's byte
  range; images are then read with ``os.pread`` (safe across forked workers). This is what subsets,
  manifests, validation and ``SimMIMDataset`` use; local files only.
- streaming (``ShardStream`` / ``build_stream_loader``): the ``webdataset`` pipeline reads shards
  sequentially, shards split across DDP ranks and DataLoader workers (every one of the
  ``world_size * num_workers`` readers takes every G-th shard of the epoch's seeded shard order;
  with fewer shards than readers, every reader reads all shards and keeps every G-th sample),
  a seeded shuffle buffer, per-sample randomness from ``(seed, reader, epoch, count)``.
  Unreadable samples and broken tar members are skipped and counted in ``batch["skipped"]``.
  Resume is exact for the same world size, worker count and batch size: every batch carries its
  reader's (epoch, samples emitted) and a resumed reader replays its shuffle buffer without decoding.

Ids are ``"<shard file name>/<key>"``.
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
from collections import deque
from functools import partial
from itertools import islice

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.shardlists import expand_urls
from webdataset.tariterators import base_plus_ext

from mimscale.errors import DataError

from .loader import _worker_init

log = logging.getLogger("mimscale.data")
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp", "tif", "tiff")
_SHARD_STREAM = 0x5A3B_1E03


def _image_key(sample: dict) -> str | None:
    return next((e for e in IMAGE_EXTS if e in sample), None)


def _scan(path: str) -> list[tuple[str, int, int, int | None]]:
    """(key, data offset, size, label) of every image sample of one tar (stops at a broken tail)."""
    found: dict[str, dict] = {}
    try:
        with tarfile.open(path, "r:") as tf:
            for m in tf:
                base, ext = base_plus_ext(m.name)
                if not m.isfile() or base is None:
                    continue
                ext = ext.lower()
                entry = found.setdefault(base, {})
                if ext in IMAGE_EXTS and "img" not in entry:
                    entry["img"] = (m.offset_data, m.size)
                elif ext in ("cls", "cls.txt", "label"):
                    try:
                        entry["cls"] = int(tf.extractfile(m).read().decode().strip())
                    except (ValueError, UnicodeDecodeError):
                        pass
    except (tarfile.TarError, OSError, EOFError) as e:
        log.warning("shard %s is damaged after %d samples: %s", path, len(found), e)
    return [(k, *v["img"], v.get("cls")) for k, v in found.items() if "img" in v]


class ShardSource:
    """Tar shards as a source: ``ShardSource("/data/train-{000..099}.tar")``."""

    def __init__(self, path: str):
        self.spec = str(path)
        try:
            self.urls = list(expand_urls(self.spec))
        except (ValueError, TypeError) as e:
            raise DataError(f"bad shard pattern {self.spec!r}: {e}") from None
        if not self.urls:
            raise DataError(f"shard pattern {self.spec!r} names no files")
        local = ["://" not in u and not u.startswith("pipe:") for u in self.urls]
        if all(local):
            missing = [u for u in self.urls if not os.path.isfile(u)]
            if missing:
                raise DataError(f"shard not found: {missing[0]} ({len(missing)} of {len(self.urls)} missing)")
        self.local = all(local)
        self.skipped_at_scan: list[str] = []  # a damaged shard tail is logged by the scan instead
        self.skip_reasons: dict[str, str] = {}
        self._index = None
        self._fds: dict[int, int] = {}
        self._pid = None

    # --- map-style view (scans the tar headers on first use) ---
    def _scanned(self):
        if self._index is None:
            if not self.local:
                raise DataError("random access to shards needs local files; stream remote shards instead")
            rows = []
            for s, url in enumerate(self.urls):
                name = os.path.basename(url)
                rows += [(f"{name}/{k}", s, off, size, lab) for k, off, size, lab in _scan(url)]
            if not rows:
                raise DataError(f"no image samples found in shards {self.spec}")
            self._index = rows
            labs = [r[4] for r in rows]
            self._labels = None if any(x is None for x in labs) else np.asarray(labs, dtype=np.int64)
        return self._index

    @property
    def ids(self) -> list[str]:
        return [r[0] for r in self._scanned()]

    @property
    def num_classes(self) -> int:
        self._scanned()
        return 0 if self._labels is None else int(self._labels.max()) + 1

    def __len__(self) -> int:
        return len(self._scanned())

    def labels(self) -> np.ndarray | None:
        self._scanned()
        return self._labels

    def label(self, i: int) -> int | None:
        lab = self.labels()
        return None if lab is None else int(lab[i])

    def read_bytes(self, i: int) -> bytes:
        _, s, off, size, _ = self._scanned()[i]
        if self._pid != os.getpid():  # descriptors are per process (workers may be forked)
            self._fds, self._pid = {}, os.getpid()
        if s not in self._fds:
            self._fds[s] = os.open(self.urls[s], os.O_RDONLY)
        data = os.pread(self._fds[s], size, off)
        if len(data) != size:
            raise OSError(f"short read in {self.urls[s]}")
        return data

    def load(self, i: int) -> Image.Image:
        return Image.open(io.BytesIO(self.read_bytes(i)))

    def describe(self) -> dict:
        return {"kind": "shards", "path": self.spec}

    def validation(self):
        return None

    def __getstate__(self):
        return {**self.__dict__, "_fds": {}, "_pid": None}

    def __repr__(self) -> str:
        return f"ShardSource({self.spec!r}, shards={len(self.urls)})"


def _take(src, index: int, every: int):
    """webdataset node splitter: this reader's share of the shard list."""
    yield from islice(src, index, None, every)


class _Counter:
    def __init__(self):
        self.errors = 0

    def __call__(self, exn) -> bool:  # webdataset handler: count and continue
        self.errors += 1
        log.warning("skipping damaged shard data: %s", " ".join(repr(exn).split()))
        return True


class ShardStream(IterableDataset):
    """Infinite stream of pre-training batches (dicts like ``SimMIMDataset``'s, already batched)."""

    def __init__(self, source: ShardSource, transform, mask_generator, batch_size: int, seed: int = 0,
                 ids=None, shuffle_buffer: int = 1000, rank: int = 0, world_size: int = 1):  # fmt: skip
        self.source, self.transform, self.mask_generator = source, transform, mask_generator
        self.batch_size, self.seed, self.shuffle_buffer = int(batch_size), int(seed), int(shuffle_buffer)
        self.ids = None if ids is None else frozenset(ids)
        self.rank, self.world_size = int(rank), int(world_size)
        self.resume: dict[int, tuple[int, int]] = {}  # reader -> (epoch, samples emitted)
        self.start_epoch = 0  # for readers not in ``resume``

    def _readers(self) -> tuple[int, int]:
        info = get_worker_info()
        w, nw = (0, 1) if info is None else (info.id, info.num_workers)
        return self.rank * nw + w, self.world_size * nw

    def _emitted(self, g: int, n_readers: int, epoch: int, counter: _Counter):
        """Raw samples of this reader in ``epoch``, after the id filter and the shuffle buffer."""
        urls = [self.source.urls[i] for i in np.random.default_rng([_SHARD_STREAM, self.seed, epoch]).permutation(
            len(self.source.urls))]  # fmt: skip
        by_shard = len(urls) >= n_readers
        split = partial(_take, index=g, every=n_readers) if by_shard else None
        ds = wds.WebDataset(urls, handler=counter, shardshuffle=False, nodesplitter=split, workersplitter=None,
                            empty_check=False, seed=0)  # fmt: skip
        stream = ds if by_shard else islice(ds, g, None, n_readers)
        if self.ids is not None:
            stream = (s for s in stream if f"{os.path.basename(s['__url__'])}/{s['__key__']}" in self.ids)
        rng = np.random.default_rng([_SHARD_STREAM, self.seed, epoch, g, n_readers])
        buf: list = []
        for s in stream:
            if len(buf) < self.shuffle_buffer:
                buf.append(s)
                continue
            j = int(rng.integers(len(buf)))
            buf[j], s = s, buf[j]
            yield s
        for j in rng.permutation(len(buf)):
            yield buf[j]

    def __iter__(self):
        g, n_readers = self._readers()
        epoch, skip = self.resume.get(g, (self.start_epoch, 0))
        counter, imgs, masks, ids, skipped = _Counter(), [], [], [], 0
        while True:
            emitted = 0
            for k, s in enumerate(self._emitted(g, n_readers, epoch, counter)):
                emitted = k + 1
                if k < skip:
                    continue  # replaying a resumed reader: no decoding
                if k == skip and skip:
                    counter.errors = 0  # damage met during the replay was counted before the resume
                rng = np.random.default_rng([_SHARD_STREAM, self.seed, g, n_readers, epoch, k])
                mask = self.mask_generator(rng)
                ext = _image_key(s)
                try:
                    if ext is None:
                        raise OSError(f"no image in sample (members: {sorted(s)})")
                    with Image.open(io.BytesIO(s[ext])) as img:
                        imgs.append(self.transform(img, rng))
                    masks.append(torch.from_numpy(mask))
                    ids.append(f"{os.path.basename(s['__url__'])}/{s['__key__']}")
                except Exception as e:  # noqa: BLE001  skip the sample, count it
                    skipped += 1
                    log.warning(
                        "skipping unreadable sample %s: %s", s.get("__key__"), " ".join(str(e).split())
                    )
                    continue
                if len(imgs) == self.batch_size:
                    skipped += counter.errors
                    counter.errors = 0
                    yield {"img": torch.stack(imgs), "mask": torch.stack(masks),
                           "skipped": torch.tensor(skipped), "reader": torch.tensor(g),
                           "stream_epoch": torch.tensor(epoch), "stream_count": torch.tensor(k + 1),
                           "ids": ids}  # fmt: skip
                    imgs, masks, ids, skipped = [], [], [], 0
            if emitted == 0 and skip == 0:
                raise DataError(f"shard reader {g} of {n_readers} got no samples in epoch {epoch} "
                                f"(fewer samples than ranks x workers, or a subset with no ids in these shards)")  # fmt: skip
            epoch, skip = epoch + 1, 0


class StreamLoader:
    """Like ``PretrainLoader`` for a ``ShardStream``: ``next()``, ``state_dict()``, ``load_state_dict()``,
    ``skipped``. The state records each reader's position after the batches consumed so far, and the
    number of batches consumed (the DataLoader takes batches from workers round-robin; after a resume
    a small reorder buffer restores the uninterrupted order)."""

    def __init__(self, stream: ShardStream, num_workers: int = 0, pin_memory: bool | None = None):
        self.stream, self.num_workers, self.pin_memory = stream, int(num_workers), pin_memory
        self.positions: dict[int, tuple[int, int]] = {}
        self.batches = 0
        self.skipped = 0
        self._it = None
        self._pending: dict[int, deque] = {}

    def _loader(self) -> DataLoader:
        kw = {"batch_size": None, "num_workers": self.num_workers,
              "pin_memory": torch.cuda.is_available() if self.pin_memory is None else self.pin_memory}  # fmt: skip
        if self.num_workers:
            kw.update(worker_init_fn=_worker_init, prefetch_factor=2)
        return DataLoader(self.stream, **kw)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._it is None:
            self._it, self._pending = iter(self._loader()), {}
        nw = max(1, self.num_workers)
        want = self.stream.rank * nw + self.batches % nw
        while not self._pending.get(want):
            b = next(self._it)
            self._pending.setdefault(int(b["reader"]), deque()).append(b)
        batch = self._pending[want].popleft()
        self.positions[want] = (int(batch["stream_epoch"]), int(batch["stream_count"]))
        self.batches += 1
        self.skipped += int(batch["skipped"])
        return batch

    def state_dict(self) -> dict:
        return {"kind": "shards", "num_workers": self.num_workers, "world_size": self.stream.world_size,
                "batch_size": self.stream.batch_size, "batches": self.batches,
                "readers": {str(g): list(p) for g, p in sorted(self.positions.items())}}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        geometry = (state.get("num_workers"), state.get("world_size"), state.get("batch_size"))
        readers = {int(g): (int(p[0]), int(p[1])) for g, p in state.get("readers", {}).items()}
        if geometry == (self.num_workers, self.stream.world_size, self.stream.batch_size):
            self.positions, self.batches = dict(readers), int(state.get("batches", 0))
            self.stream.resume, self.stream.start_epoch = dict(readers), 0
        else:  # cannot map positions onto other readers: restart at the oldest epoch
            log.warning("shard stream geometry changed %s -> %s: restarting readers at an epoch start", geometry,
                        (self.num_workers, self.stream.world_size, self.stream.batch_size))  # fmt: skip
            self.positions, self.batches = {}, 0
            self.stream.resume, self.stream.start_epoch = {}, min((p[0] for p in readers.values()), default=0)
        self._it = None


def build_stream_loader(source: ShardSource, transform, mask_generator, batch_size: int, seed: int = 0,
                        num_workers: int = 0, rank: int = 0, world_size: int = 1, ids=None,
                        shuffle_buffer: int = 1000) -> StreamLoader:  # fmt: skip
    """Streaming pre-training loader over shards (``ids``: restrict to a subset manifest's ids)."""
    stream = ShardStream(
        source, transform, mask_generator, batch_size, seed, ids, shuffle_buffer, rank, world_size
    )
    return StreamLoader(stream, num_workers)


def write_shards(samples, pattern: str, maxcount: int = 1000) -> list[str]:
    """Write ``(key, image bytes, ext, label or None)`` samples to shards ``pattern % k`` (e.g.
    ``"/out/train-%04d.tar"``) with webdataset's ``ShardWriter``; returns the shard paths."""
    paths = []
    with wds.ShardWriter(pattern, maxcount=maxcount, verbose=0) as sink:
        for key, data, ext, label in samples:
            rec = {"__key__": key, ext: data}
            if label is not None:
                rec["cls"] = str(int(label)).encode()
            sink.write(rec)
            if sink.fname not in paths:
                paths.append(sink.fname)
    return paths
