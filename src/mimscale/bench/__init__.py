"""``mimscale bench``: ``measure.py`` takes this machine's numbers, ``cli.py`` is the command. Names are
imported on first use (``--help`` does not load torch)."""

from __future__ import annotations

from mimscale.lazy import lazy_exports

_NAMES = {"bench": "measure", "matmul_peak": "measure", "train_throughput": "measure",
          "loader_throughput": "measure", "bench_main": "cli"}
__all__ = list(_NAMES)

__getattr__ = lazy_exports(__name__, _NAMES)
