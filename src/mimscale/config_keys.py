"""One declaration per config key: its default, check, documentation and role in the identity, together.

A config schema (``mimscale.config.Config``, ``mimscale.evaluate.config.EvalConfig``) is a dataclass whose
fields are made by ``key(...)``; everything else about a key is derived from that one place: the checks that
``validate`` runs, the keys left out of a run id, the keys added after the first schema with the value that
keeps the older behaviour, and docs/CONFIG.md. A key both schemas share (``train.fp16_init_scale`` and the
evaluation's ``fp16_init_scale``) is one ``Key`` object used by both.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from mimscale.errors import ConfigError

IDENTITY = "identity"  # what a run computes: enters the run id
PLACEMENT = "placement"  # where it goes, how fast, or a guard that stops a failing run: left out of the id


@dataclass(frozen=True)
class Check:
    """A test of one value and the words that complete "KEY must be ..." when it fails."""

    test: Callable[[Any], bool]
    what: str
    verb: str = "must be"

    def __call__(self, key: str, value: Any) -> None:
        """Raise a one-line ConfigError naming ``key`` (a config key or a command's flag) unless ``value`` passes."""
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value}")
        try:
            ok = bool(self.test(value))
        except (TypeError, ValueError, OverflowError):  # a value of another type than the key's fails its check
            ok = False
        if not ok:
            raise ConfigError(f"{key} {self.verb} {self.what}, got {_shown(value)}")


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, Sequence):  # list, tuple and OmegaConf's list and tuple nodes
        return str(list(value))
    return str(value)


def positive(what: str = "positive") -> Check:
    return Check(lambda v: v > 0, what)


def at_least_zero(note: str = "") -> Check:
    return Check(lambda v: v >= 0, ">= 0" + (f" ({note})" if note else ""))


def between(lo: float, hi: float, lo_open: bool, hi_open: bool) -> Check:
    """lo < v (or lo <= v) and v < hi (or v <= hi); the words are interval notation: in (0, 1]."""
    def test(v):
        return (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)
    return Check(test, f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}")


def one_of(*choices: str) -> Check:
    return Check(lambda v: v in choices, "one of " + ", ".join(choices))


def matches(pattern: str, what: str) -> Check:
    regex = re.compile(pattern)
    return Check(lambda v: bool(regex.fullmatch(str(v))), what)


def pair(lo_min: float, hi_max: float) -> Check:
    """[lo, hi] with lo_min < lo <= hi <= hi_max, both finite."""
    bound = f" <= {hi_max:g}" if math.isfinite(hi_max) else ""

    def test(p):
        lo, hi = p
        return math.isfinite(lo) and math.isfinite(hi) and lo_min < lo <= hi <= hi_max
    return Check(test, f"[lo, hi] with {lo_min:g} < lo <= hi{bound}")


def each(check: Check, what: str, verb: str = "must be") -> Check:
    return Check(lambda vs: all(check.test(v) for v in vs), what, verb)


# Keys whose values have no range: their type (checked by OmegaConf when merged) is the whole check.
ANY_INTEGER = Check(lambda v: True, "an integer")
FLAG = Check(lambda v: True, "true or false")
MAPPING = Check(lambda v: True, "a mapping")
TEXT = Check(lambda v: True, "any text")
NOT_EMPTY = Check(lambda v: bool(v), "a non-empty text")
# Every seed of every command: numpy's generators refuse negative seeds and torch's overflow past 64 bits (a seed
# is also combined with epochs and ranks, e.g. seed * 1000 + epoch), so one range for all.
SEED = Check(lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and 0 <= v < 2**32,
             "an integer in [0, 2^32)")


def _plain_name(v: Any) -> bool:
    return isinstance(v, str) and (v == "" or (re.fullmatch(r"[^/\\\x00]+", v) is not None
                                               and v not in (".", "..")))


# A directory or file name inside the directory it belongs to (a run in ``out``, a result in RUN_DIR/eval): a
# '/', '..' or an absolute path would write elsewhere.
PLAIN_NAME = Check(_plain_name, "a plain name (no '/', '\\', '..' or absolute path)")


class _SameAsDefault:
    """``Key.before`` of a key whose neutral value is its default (every key but those added to change one)."""

    def __repr__(self) -> str:
        return "SAME_AS_DEFAULT"


SAME_AS_DEFAULT = _SameAsDefault()


@dataclass(frozen=True)
class Key:
    """Everything about one config key but its name and type (those are the dataclass field's)."""

    default: Any
    doc: str
    check: Check
    role: str = IDENTITY  # IDENTITY | PLACEMENT (pre-training); evaluation keys say which tasks read them
    tasks: tuple[str, ...] = ()  # evaluation only: the tasks whose result depends on this key
    # Added to the schema after its first version: the schema version (mimscale.config.SCHEMA_VERSION) that
    # added it. At its neutral value it is left out of the identity, so ids computed before it existed stay the
    # same.
    since: int = 0
    # The neutral value where it is not the default: a key added to change a default (the new behaviour is the
    # default, the old one stays reachable at ``before``). An identity written before the key still means the
    # old behaviour, and a request at the new default no longer matches it.
    before: Any = SAME_AS_DEFAULT

    def field(self, **replace: Any) -> Any:
        """A dataclass field declared by this key (``replace`` changes a role for a schema that shares it)."""
        decl = dataclasses.replace(self, **replace) if replace else self
        if isinstance(decl.default, (list, dict)):
            default = decl.default
            return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"key": decl})
        return dataclasses.field(default=decl.default, metadata={"key": decl})

    @property
    def neutral(self) -> Any:
        """The value that reproduces the behaviour before the key existed."""
        return self.default if self.before is SAME_AS_DEFAULT else self.before


def key(default: Any, doc: str, check: Check, role: str = IDENTITY, tasks: tuple[str, ...] = (),
        since: int = 0, before: Any = None) -> Any:
    """Declare a config key as a dataclass field: ``lr: float = key(1e-4, "the learning rate", positive())``.
    ``before``: the neutral value of a key added to change a default (``since`` required)."""
    if before is not None and not since:
        raise ValueError("a key with a former value (before=) is a later key: give since=")
    return Key(default, doc, check, role, tasks, since, SAME_AS_DEFAULT if before is None else before).field()


def section(schema: type, doc: str) -> Any:
    """A nested group of keys (``model``, ``train``): its own dataclass of ``key`` fields."""
    return dataclasses.field(default_factory=schema, metadata={"section": schema, "doc": doc})


def declarations(schema: type, prefix: str = "") -> Iterator[tuple[str, Key]]:
    """(dotted key, declaration) of every key of ``schema``, in declaration order."""
    for f in dataclasses.fields(schema):
        if "section" in f.metadata:
            yield from declarations(f.metadata["section"], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f.metadata["key"]


def sections(schema: type) -> list[tuple[str, str]]:
    """(name, doc) of the nested groups of ``schema``."""
    return [(f.name, f.metadata["doc"]) for f in dataclasses.fields(schema) if "section" in f.metadata]


def field_type(schema: type, dotted: str) -> str:
    """The declared type of a key, as written in the schema (``float``, ``tuple[float, float]``)."""
    *parents, leaf = dotted.split(".")
    for p in parents:
        schema = next(f.metadata["section"] for f in dataclasses.fields(schema) if f.name == p)
    t = next(f.type for f in dataclasses.fields(schema) if f.name == leaf)
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))
