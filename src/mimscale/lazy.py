"""Lazy re-exports for package ``__init__`` files: a heavy package (torch, pandas, scipy) names what it exports
without importing it, so a command's ``--help`` and the torch-free processes stay light."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, names: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: ``names`` maps each exported name to the module that defines
    it, relative to the package (``"loop"``) or absolute (``"mimscale.errors"``); it is imported on first use."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = names[name] if names[name].startswith("mimscale.") else f"{package}.{names[name]}"
        return getattr(importlib.import_module(module), name)

    return __getattr__
