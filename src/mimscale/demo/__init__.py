"""The demo: the built-in data-scaling study end to end (``mimscale demo``).

``variants.py`` the built-in study and its ``--seed`` / ``--data`` / ``--backbone`` variants; ``run.py``
runs it (study, results, report); ``seed_spread.py`` the report section comparing the demo's seeds;
``cli.py`` the command. Names are imported on first use (``--help`` stays light).
"""

from __future__ import annotations

from mimscale.lazy import lazy_exports

_NAMES = {
    "BACKBONES": "variants", "DATASETS": "variants", "builtin_study": "variants", "default_out": "variants",
    "variant_source": "variants", "variant_study": "variants", "run_demo": "run", "demo_main": "cli",
}
__all__ = list(_NAMES)

__getattr__ = lazy_exports(__name__, _NAMES)
