"""The model registry: ``build_model(name, **overrides)`` over the families' PRESETS tables.

A family name (``"swinv2"``, ``"vit"``) builds any configuration from keyword arguments; a preset
name (``"swinv2-b"``) starts from the preset's keywords and applies the overrides on top.

Adding a family: one module under ``mimscale/models/`` and one line in ``FAMILIES``. The module defines
``MODEL_CLASS`` (keyword-only constructor, the backbone interface in ``models/__init__.py``) and ``PRESETS``
(name -> kwargs).
"""

from __future__ import annotations

import difflib
import importlib
import inspect

import torch.nn as nn

from mimscale.errors import ConfigError, UnknownModelError, UserError

# The one list of model families: name -> module.
FAMILIES = {"swinv2": "mimscale.models.swinv2", "vit": "mimscale.models.vit"}


def family_module(family: str):
    return importlib.import_module(FAMILIES[family])


def _presets() -> dict[str, tuple[str, dict]]:
    table = {}
    for family in FAMILIES:
        for preset, kwargs in family_module(family).PRESETS.items():
            table[preset] = (family, kwargs)
    return table


def list_models() -> list[str]:
    """Family names first, then every preset, sorted."""
    return list(FAMILIES) + sorted(_presets())


def model_kwargs(name: str, **overrides) -> tuple[str, dict]:
    """Resolve a name to (family, keyword arguments: the preset's, then ``overrides``) without building."""
    if name in FAMILIES:
        return name, dict(overrides)
    presets = _presets()
    if name not in presets:
        close = difflib.get_close_matches(name, list_models(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UnknownModelError(f"unknown model '{name}'{hint}; valid: {', '.join(list_models())}")
    family, kwargs = presets[name]
    return family, {**kwargs, **overrides}


def check_kwargs(family: str, kwargs: dict) -> None:
    """The one check of a family's constructor keywords (whoever gives them: model.kwargs, an evaluation's
    model_kwargs, a bench flag): an unknown keyword, then the family's own ``check_kwargs`` over every keyword
    with its default filled in. A one-line ConfigError, before anything is built."""
    params = inspect.signature(family_module(family).MODEL_CLASS).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(params), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"model family '{family}' has no keyword '{unknown[0]}'{hint}")
    defaults = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    try:
        family_module(family).check_kwargs({**defaults, **kwargs})
    except UserError:
        raise
    except (TypeError, ValueError, ArithmeticError) as e:  # a value of another type than the keyword's
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"bad model keywords {kwargs}: {why}") from None


def checked_kwargs(name: str, **overrides) -> tuple[str, dict]:
    """``model_kwargs``, checked (``check_kwargs``)."""
    family, kwargs = model_kwargs(name, **overrides)
    check_kwargs(family, kwargs)
    return family, kwargs


def build_model(name: str, **overrides) -> nn.Module:
    """Build a backbone by family or preset name; unknown names raise with the valid list, bad keywords with a
    one-line ConfigError."""
    family, kwargs = checked_kwargs(name, **overrides)
    return family_module(family).MODEL_CLASS(**kwargs)
