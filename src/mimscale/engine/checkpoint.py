"""Checkpoint files and what they hold.

A loop declares once, in a ``Layout``, the parts its checkpoint holds; each part is an object with
``state_dict`` / ``load_state_dict`` (the model, the optimizer, the grad scaler, the RNGs, the loop's own state).
The same declaration writes a checkpoint, checks that a file is one (the keys it must hold) and restores it.
Everything in a checkpoint is a tensor or a plain Python value, so it is loaded with ``weights_only=True``: a
file from someone else cannot run code here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mimscale.engine import distributed as dist
from mimscale.errors import CheckpointError
from mimscale.models.official import read_checkpoint_file
from mimscale.rundir import atomic_write


@dataclass(frozen=True)
class Layout:
    """The parts of a checkpoint, in order. A part is saved under its name, except a ``flat`` one (name -> the
    keys its state has), whose keys are written at the top level (the loop's counters, as every checkpoint so
    far has them); ``optional`` parts may be absent or None (a grad scaler only with fp16). ``required_flat``
    are the flat keys a file must hold to be this kind of checkpoint."""

    what: str
    parts: tuple[str, ...]
    flat: dict[str, tuple[str, ...]] = field(default_factory=dict)
    optional: tuple[str, ...] = ()
    required_flat: tuple[str, ...] = ()

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(p for p in self.parts if p not in self.flat and p not in self.optional) + self.required_flat

    def describe(self) -> str:
        """One line per part: what this checkpoint holds."""
        def line(p: str) -> str:
            keys = f" (top-level keys: {', '.join(self.flat[p])})" if p in self.flat else ""
            return f"{p}{keys}{' (optional)' if p in self.optional else ''}"
        return "\n".join(line(p) for p in self.parts)

    def state(self, objects: dict[str, Any]) -> dict:
        """The checkpoint of ``objects`` (name -> part; None for an absent optional part). Collective: every
        rank calls it (a part may gather from every rank)."""
        out = {}
        for name in self.parts:
            obj = objects[name]
            state = obj.state_dict() if obj is not None else None
            if name in self.flat:
                out.update(state)
            else:
                out[name] = state
        return out

    def check(self, saved: dict, path: Path) -> dict:
        """``saved`` itself, or a CheckpointError when it lacks a key this layout requires."""
        lacking = [k for k in self.required if k not in saved]
        if lacking:
            raise CheckpointError(f"{path} is not a {self.what} checkpoint (it lacks '{lacking[0]}')")
        return saved

    def part(self, saved: dict, name: str):
        """The saved state of part ``name`` (a flat part: the whole top level, from which it takes its keys)."""
        return saved if name in self.flat else saved.get(name)

    def restore(self, saved: dict, objects: dict[str, Any]) -> None:
        """Load every part of ``objects`` from ``saved`` (an optional part absent from either is skipped)."""
        for name in self.parts:
            obj, state = objects[name], self.part(saved, name)
            if obj is None or (name in self.optional and not state):
                continue
            obj.load_state_dict(state)


class Fixed:
    """A part that is written for the reader and not restored (e.g. the resolved config: the run directory's
    config.yaml says what the run is; the checkpoint carries it so that a file alone says what it is)."""

    def __init__(self, value):
        self.value = value

    def state_dict(self):
        return self.value

    def load_state_dict(self, state) -> None:
        pass


def atomic_torch_save(path: Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` atomically. Any failure to write (torch reports a full disk as a RuntimeError)
    is an OSError naming the file: one line, and the previous file is left as it was."""
    path = Path(path)
    try:
        atomic_write(path, lambda f: torch.save(obj, f))
    except RuntimeError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise OSError(f"cannot write checkpoint {path}: {first}") from None


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint's contents without running code from it (mimscale's weights-only, the official code's with
    its yacs config as plain data: ``models.official.read_checkpoint_file``, the one reader); a file that is
    not one -> CheckpointError (one line)."""
    return read_checkpoint_file(path, map_location)


def newest_intact(paths: list[Path], tag: str, check: Layout | None = None,
                  map_location: str | torch.device = "cpu", using: str = "using") -> tuple[Path | None, dict | None]:
    """(path, contents) of the newest of ``paths`` (oldest first) that loads (and passes ``check``); a damaged
    newer one (a flipped bit, a file cut by a full disk or a kill outside our atomic writes, not a checkpoint)
    is passed over with a printed line. (None, None) for no paths; CheckpointError when none is intact."""
    damaged = []
    for path in reversed(paths):
        try:
            saved = load_checkpoint(path, map_location=map_location)
            if check is not None:
                check.check(saved, path)
        except CheckpointError as e:
            damaged.append(str(e))
            continue
        if damaged and dist.is_main():
            print(f"[{tag}] passed over {len(damaged)} damaged checkpoint(s) ({damaged[0]}); {using} {path.name}",
                  file=sys.stderr)
        return path, saved
    if damaged:
        raise CheckpointError(damaged[0] if len(damaged) == 1 else
                              f"none of {len(damaged)} checkpoints is intact; the newest: {damaged[0]}")
    return None, None
