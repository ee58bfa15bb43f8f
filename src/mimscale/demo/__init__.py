"""The demo: the built-in data-scaling study end to end (``mimscale demo``).

``variants.py`` the built-in study and its ``--seed`` / ``--data`` / ``--backbone`` variants; ``run.py``
runs it (study, results, report); ``seed_spread.py`` the report section comparing the demo's seeds;
``cli.py`` the command. Names are imported on first use (``--help`` stays light).
"""

from __future__ import annotations

import importlib

_NAMES = {
    "BACKBONES": "variants", "DATASETS": "variants", "builtin_study": "variants", "default_out": "variants",
    "variant_source": "variants", "variant_study": "variants", "run_demo": "run", "demo_main": "cli",
}
__all__ = list(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"mimscale.demo.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'mimscale.demo' has no attribute {name!r}")
