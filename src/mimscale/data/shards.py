"""Tar shards in the WebDataset layout (``<key>.jpg`` + optional ``<key>.cls`` per sample).

Read map-style (``ShardSource.load(i)``): a one-time scan of the tar headers gives every sample's byte
range; images are then read with ``os.pread`` (safe across forked workers). Subsets, manifests,
validation and pre-training (``SimMIMDataset`` with the resumable sampler) read shards this way, so a
shard source is exactly as resumable and as seeded as a folder; local files only. ``write_shards``
writes them (``webdataset``'s ``ShardWriter``).

Ids are ``"<shard file name>/<key>"``.
"""

from __future__ import annotations

import io
import logging
import os
import tarfile

import numpy as np
import webdataset as wds
from PIL import Image
from webdataset.shardlists import expand_urls
from webdataset.tariterators import base_plus_ext

from mimscale.errors import DataError

log = logging.getLogger("mimscale.data")
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp", "tif", "tiff")


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
