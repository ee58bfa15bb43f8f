"""Model registry: ``build_model(name, **overrides)`` over the families' PRESETS tables.

A family name (``"swinv2"``, ``"vit"``) builds any configuration from keyword arguments; a preset
name (``"swinv2-b"``) starts from the preset's keywords and applies the overrides on top.
"""

from __future__ import annotations

import difflib
import importlib

import torch.nn as nn

# family name -> module path; each module defines ``MODEL_CLASS`` and ``PRESETS`` (name -> kwargs).
_FAMILY_MODULES = {"swinv2": "mimscale.models.swinv2", "vit": "mimscale.models.vit"}


class UnknownModelError(ValueError):
    pass


def _family(name: str):
    return importlib.import_module(_FAMILY_MODULES[name])


def _presets() -> dict[str, tuple[str, dict]]:
    table = {}
    for family in _FAMILY_MODULES:
        for preset, kwargs in _family(family).PRESETS.items():
            table[preset] = (family, kwargs)
    return table


def list_models() -> list[str]:
    """Family names first, then every preset, sorted."""
    return list(_FAMILY_MODULES) + sorted(_presets())


def model_kwargs(name: str, **overrides) -> tuple[str, dict]:
    """Resolve a name to (family, full keyword arguments) without building anything."""
    if name in _FAMILY_MODULES:
        return name, dict(overrides)
    presets = _presets()
    if name not in presets:
        close = difflib.get_close_matches(name, list_models(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UnknownModelError(f"unknown model '{name}'{hint}; valid: {', '.join(list_models())}")
    family, kwargs = presets[name]
    return family, {**kwargs, **overrides}


def build_model(name: str, **overrides) -> nn.Module:
    """Build a backbone by family or preset name; unknown names raise with the valid list."""
    family, kwargs = model_kwargs(name, **overrides)
    return _family(family).MODEL_CLASS(**kwargs)
