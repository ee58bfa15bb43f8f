"""``mimscale bench``: ``measure.py`` takes this machine's numbers, ``cli.py`` is the command. Names are
imported on first use (``--help`` does not load torch)."""

from __future__ import annotations

import importlib

_NAMES = {"bench": "measure", "matmul_peak": "measure", "train_throughput": "measure",
          "loader_throughput": "measure", "bench_main": "cli"}
__all__ = list(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"mimscale.bench.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'mimscale.bench' has no attribute {name!r}")
