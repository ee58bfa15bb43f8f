"""Subset manifests at ImageNet scale: planning time and memory, and manifest bytes per run before (whole
manifests in every run directory) and after (ids stored once per study, references in the runs).

A synthetic listing (no files) of N ids shaped like ImageNet's ("n01440764/n01440764_10026.JPEG") over C
classes of varied size is planned into the nested fractions 10/20/50/100% plus the automatic held-out split
(10,000 images), as a run of a study does; the manifests are written to a temporary study directory, one
run directory per fraction, then written again from a second run of each fraction (the sharing case).

    nice python benchmarks/manifest_scale.py                          # ImageNet-22K: 14,197,122 ids, 21,841 classes
    nice python benchmarks/manifest_scale.py --n 1281167 --classes 1000   # ImageNet-1K

Peak RSS is the process's (resource.getrusage), so run one size per process.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from mimscale.data.subsets import Manifest, load_manifest, make_subsets, write_manifest
from mimscale.rundir import MANIFESTS, manifest_store

FRACTIONS = (0.1, 0.2, 0.5, 1.0)
GRID_RUNS = 63  # runs of the paper grid (issue 25)


class SyntheticListing:
    """Ids and labels only: what subset planning reads from a source."""

    def __init__(self, n: int, classes: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        weights = rng.uniform(0.5, 1.5, classes)
        sizes = np.floor(weights / weights.sum() * n).astype(np.int64)
        sizes[: n - int(sizes.sum())] += 1  # exactly n
        self._labels = np.repeat(np.arange(classes, dtype=np.int64), sizes)
        self.ids: list[str] = []
        for c, size in enumerate(sizes.tolist()):
            wnid = f"n{1440764 + 37 * c:08d}"
            numbers = np.sort(rng.choice(3 * size + 100, size, replace=False)) + 1
            self.ids.extend(sorted(f"{wnid}/{wnid}_{k}.JPEG" for k in numbers.tolist()))
        self._n, self._classes = n, classes

    def labels(self):
        return self._labels

    def describe(self) -> dict:
        return {"kind": "synthetic", "n": self._n, "classes": self._classes}

    def validation(self):
        return None


def inline_bytes(m: Manifest) -> int:
    """Bytes of the whole manifest as every run wrote it before (json indent=1), counted without building
    the file."""
    return sum(len(piece.encode()) for piece in json.JSONEncoder(indent=1).iterencode(m.to_json())) + 1


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_s() -> float:
    """User + system CPU seconds of this process: on a shared machine, steadier than wall time."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Clock:
    """Wall and CPU seconds since it was started."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), cpu_s()

    def __str__(self) -> str:
        return f"{time.perf_counter() - self.wall:.1f} s wall, {cpu_s() - self.cpu:.1f} s CPU"


def old_class_split_s(src: SyntheticListing, sample: int = 50) -> float:
    """CPU seconds the replaced class split (``pool[labels == c]``, one scan of the pool per class) would take
    once over the whole listing, extrapolated from ``sample`` classes."""
    lab, pool = src.labels(), np.arange(len(src.ids), dtype=np.int64)
    t0 = cpu_s()
    for c in range(sample):
        pool[lab == c]
    return (cpu_s() - t0) / sample * src._classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=14_197_122, help="ids in the listing (ImageNet-22K: 14,197,122)")
    parser.add_argument("--classes", type=int, default=21_841, help="classes (ImageNet-22K: 21,841)")
    args = parser.parse_args()

    clock = Clock()
    src = SyntheticListing(args.n, args.classes)
    print(f"listing: {args.n:,d} ids, {args.classes:,d} classes, {clock}, peak RSS {peak_rss_mib():,.0f} MiB")

    clock = Clock()
    manifests = make_subsets(src, FRACTIONS, seed=0, holdout="auto", holdout_seed=0)
    print(f"plan {'/'.join(f'{f:g}' for f in FRACTIONS)} + held-out ({len(manifests[-1].ids):,d} ids): {clock}, "
          f"peak RSS {peak_rss_mib():,.0f} MiB")
    clock = Clock()
    old = old_class_split_s(src)
    print(f"  the replaced class split (a scan of the pool per class) would take {old:.1f} s CPU per pass, 5 passes "
          f"per plan (held-out + 4 fractions) [{clock} to extrapolate from 50 classes]")

    held = manifests[-1]
    before = {m.fraction: inline_bytes(m) for m in manifests[:-1]}
    before_held = inline_bytes(held)

    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp)
        (study / "study.yaml").write_text("name: manifest-scale\n")
        times, refs = {}, {}
        for copy in ("first", "second"):  # the second run of each fraction finds its bodies there
            clock = Clock()
            for m in manifests[:-1]:
                run = study / "runs" / f"{copy}-{m.fraction:g}"
                assert manifest_store(run) == study
                write_manifest(run / "subset.json", m, store=study)
                write_manifest(run / "heldout.json", held, store=study)
                refs[m.fraction] = (run / "subset.json").stat().st_size + (run / "heldout.json").stat().st_size
            times[copy] = str(clock)
        bodies = sorted((study / MANIFESTS).iterdir())
        store_bytes = sum(p.stat().st_size for p in bodies)
        clock = Clock()
        again = load_manifest(study / "runs" / "second-1" / "subset.json")
        t_load = str(clock)
        assert again.ids == manifests[-2].ids and again.per_class == manifests[-2].per_class
    print(f"store: {len(bodies)} bodies, {store_bytes:,d} bytes; written in {times['first']} by the first run "
          f"of each fraction, {times['second']} (checked, not rewritten) by the second; the 100% manifest "
          f"loads (body read and checked) in {t_load}")
    print("manifest bytes per run (subset.json + heldout.json):")
    for f in FRACTIONS:
        print(f"  {f:>4g}: {len(next(m for m in manifests if m.fraction == f).ids):>11,d} ids  before "
              f"{before[f] + before_held:>13,d}  after {refs[f]:>6,d} in the run dir")
    grid_before = sum(before.values()) / len(before) + before_held
    print(f"a study of {GRID_RUNS} runs spread over the 4 fractions: before {GRID_RUNS * grid_before / 1e6:,.0f} MB, "
          f"after {(GRID_RUNS * np.mean(list(refs.values())) + store_bytes) / 1e6:,.1f} MB "
          f"(references + one store)")
    print(f"peak RSS {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
