"""Study files: a base config, axes and evaluations, expanded to runs identified by ``run_id(cfg)``.

A study file (YAML)::

    name: cpu-small                  # default: the file's stem
    base_config: ../pretrain/swinv2-cpu.yaml  # optional: relative to the study file, else a packaged config
    base: {train.batch_size: 64}     # config values, nested or dotted; win over base_config
    axes:                            # cartesian product, in this order; any config key
      model.name: [swinv2-cpu-t, swinv2-cpu-s]
      data.fraction: [0.1, 1.0]
    zip:                             # optional groups whose keys vary together (one axis each)
      - {train.iters: [100, 200], train.warmup_iters: [10, 20]}
    evals:                           # run after each pre-training: mimscale.evaluate keys (docs/CONFIG.md)
      - {name: knn, task: knn, knn_k: 20}   # without train_source: the run's own images' labelled splits
                                            # (built-in shapes when it pre-trains on a built-in source)
      - {name: ft, task: finetune, runs: spanning}  # only a subset of the runs (``EVAL_RUNS``)
    out: runs/cpu-small              # optional study directory (default runs/<name>)

The *definition* (everything but ``out``, with ``base_config`` inlined and keys dotted) is what
``STUDY_DIR/study.yaml`` holds. Two studies sharing a directory must agree on its pre-training part
(``pretraining()``: everything but the evals); the evals may change: each run's evaluations are looked up
by their own identity, so a changed or added eval runs on the finished checkpoints, nothing re-trains.

An eval entry's ``runs`` says which runs it evaluates (``spanning_runs``): ``all`` (the default) or
``spanning``, a fixed subset that holds every value of every axis, so an expensive fine-tuning can be run on
a quarter of a grid and predicted for the rest from held-out loss (``mimscale analyze``: prediction). A run
outside the subset does not have that eval at all (``StudyRun.evals``): it is never run or waited for there.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from mimscale import config as C
from mimscale.errors import StudyError
from mimscale.evaluate.config import resolve_spec

# "runs" is the expansion the runner writes into STUDY_DIR/study.yaml; it is ignored on input, so that
# file can itself be edited and run again.
TOP_KEYS = ("name", "description", "base_config", "base", "axes", "zip", "evals", "out", "runs")
# The study decides where each run goes and how many threads it gets; a study file setting them would
# either be ignored or put two runs in one directory.
RESERVED_KEYS = ("run_dir", "out", "name", "threads")
_EVAL_NAME = re.compile(r"^(?!\.\.?$)[A-Za-z0-9_.-]+$")  # not . or ..: a name stays inside its directory
# An eval entry's own key (not an evaluation setting): which runs of the grid it evaluates.
EVAL_RUNS = "runs"
EVAL_RUNS_CHOICES = ("all", "spanning")


@dataclass
class StudyRun:
    id: str
    index: int  # position in the grid (the order of `plan` and `status`)
    axes: dict[str, Any]  # this run's value of every axis key
    cfg: DictConfig  # resolved, frozen; run_dir/threads are filled in by the executor
    evals: list[dict] = field(default_factory=list)  # the study's evals as this run runs them (resolve_spec)

    def label(self) -> str:
        return " ".join(f"{k}={axis_text(v)}" for k, v in self.axes.items())


@dataclass
class Study:
    name: str
    base: dict[str, Any]  # dotted key -> value
    axes: dict[str, list]
    zip: list[dict[str, list]]
    evals: list[dict]
    description: str = ""
    out: str | None = None
    runs: list[StudyRun] = field(default_factory=list)

    def definition(self) -> dict:
        """The normalised definition, what study.yaml holds (the description is free text)."""
        return {**self.pretraining(), "evals": self.evals}

    def pretraining(self) -> dict:
        """The part of the definition a shared directory must match: the runs. Evaluations are not in it."""
        return {"name": self.name, "base": dict(sorted(self.base.items())), "axes": self.axes, "zip": self.zip}

    def axis_keys(self) -> list[str]:
        return list(self.axes) + [k for group in self.zip for k in group]

    def run(self, run_id: str) -> StudyRun:
        for r in self.runs:
            if r.id == run_id:
                return r
        raise StudyError(f"study '{self.name}' has no run '{run_id}'")

    def default_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / self.name


def axis_text(v: Any) -> str:
    """An axis value as the user wrote it (0.1, not 0.1000; lists and dicts as compact JSON)."""
    return json.dumps(v, separators=(",", ":")) if isinstance(v, (dict, list)) else str(v)


def _nest(flat: dict[str, Any]) -> dict:
    """Dotted keys -> nested dict; a later, longer key refines an earlier dict value."""
    root: dict = {}
    for key, value in flat.items():
        node = root
        *parents, leaf = key.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[leaf] = value
    return root


def _find(name: str, base_dir: Path | None, what: str) -> Path:
    """A file a study names: relative to the study file's folder, else a packaged config (``C.find_config``)."""
    try:
        return C.find_config(name, base_dir, what)
    except C.ConfigError as e:
        raise StudyError(str(e)) from None


def _read_yaml(path: Path, what: str) -> Any:
    if not path.is_file():
        raise StudyError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise StudyError(f"cannot parse {path}: {' '.join(str(e).split())[:200]}") from None


def _check_reserved(key: str, where: str) -> None:
    if key in RESERVED_KEYS:
        raise StudyError(f"{where} sets '{key}', which the study runner sets itself; remove it")


def _axis_list(key: str, values: Any, where: str) -> list:
    if not isinstance(values, list):
        raise StudyError(f"{where} '{key}' must be a list of values, got {type(values).__name__}")
    if not values:
        raise StudyError(f"{where} '{key}' is empty; give at least one value")
    return values


def _parse_evals(raw: Any, base_dir: Path | None) -> list[dict]:
    """Each entry: mimscale.evaluate config keys (task, name, knn_k, ...), optionally ``config: file.yaml``
    whose values are inlined (entry keys win) so the definition does not depend on where files are."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise StudyError("'evals' must be a list of {name, task, ...} mappings")
    evals, names = [], set()
    for i, e in enumerate(raw):
        if not isinstance(e, dict):
            raise StudyError(f"evals[{i}] must be a mapping with a 'task' (e.g. {{name: knn, task: knn}})")
        if e.get("config") is not None:
            path = _find(str(e["config"]), base_dir, f"evals[{i}] config")
            loaded = _read_yaml(path, f"evals[{i}] config")
            if not isinstance(loaded, dict):
                raise StudyError(f"evals[{i}] config {path} is not a mapping of evaluation settings")
            e = {**loaded, **{k: v for k, v in e.items() if k != "config"}}
        if not isinstance(e.get("task"), str):
            raise StudyError(f"evals[{i}] must be a mapping with a 'task' (e.g. {{name: knn, task: knn}})")
        e = {"name": str(e.get("name") or e["task"]), **{k: v for k, v in e.items() if k != "name"}}
        if not _EVAL_NAME.match(e["name"]):
            raise StudyError(f"evals[{i}] name '{e['name']}' must use only letters, digits, '_', '.', '-'")
        if e["name"] in names:
            raise StudyError(f"two evals are named '{e['name']}'; names must be unique")
        if e.get(EVAL_RUNS, "all") not in EVAL_RUNS_CHOICES:
            raise StudyError(f"evals[{i}] ({e['name']}) runs: {e[EVAL_RUNS]!r}; choose one of "
                             f"{', '.join(EVAL_RUNS_CHOICES)}")
        names.add(e["name"])
        evals.append(e)
    return evals


def parse_study(doc: Any, source: str, base_dir: Path | None = None) -> Study:
    """Validate a loaded study document (file or study.yaml) and expand its runs."""
    if not isinstance(doc, dict):
        raise StudyError(f"{source}: a study file must be a mapping with 'axes' (and 'base', 'evals')")
    unknown = [k for k in doc if k not in TOP_KEYS]
    if unknown:
        raise StudyError(f"{source}: unknown study key '{unknown[0]}'; valid: {', '.join(TOP_KEYS)}")
    base: dict[str, Any] = {}
    if doc.get("base_config") is not None:
        path = _find(str(doc["base_config"]), base_dir, "base_config")
        loaded = _read_yaml(path, "base_config")
        if not isinstance(loaded, dict):
            raise StudyError(f"base_config {path} is not a mapping of config values")
        # A pre-training config may say where a single run goes (out, run_dir, threads); in a study the
        # runner decides that, so those keys of a shared file are dropped rather than refused.
        base.update({k: v for k, v in C.flatten(loaded).items() if k not in RESERVED_KEYS})
    inline = doc.get("base") or {}
    if not isinstance(inline, dict):
        raise StudyError(f"{source}: 'base' must be a mapping of config values")
    base.update(C.flatten(inline))
    for key in base:
        _check_reserved(key, "base")

    axes_raw = doc.get("axes") or {}
    if not isinstance(axes_raw, dict):
        raise StudyError(f"{source}: 'axes' must be a mapping of config key -> list of values")
    axes = {str(k): _axis_list(str(k), v, "axis") for k, v in axes_raw.items()}
    zips_raw = doc.get("zip") or []
    if not isinstance(zips_raw, list) or not all(isinstance(g, dict) and g for g in zips_raw):
        raise StudyError(f"{source}: 'zip' must be a list of non-empty mappings of key -> list")
    zips = []
    for g in zips_raw:
        group = {str(k): _axis_list(str(k), v, "zip key") for k, v in g.items()}
        lengths = {len(v) for v in group.values()}
        if len(lengths) > 1:
            raise StudyError(f"zip group {list(group)} has lists of different lengths {sorted(lengths)}")
        zips.append(group)
    keys = list(axes) + [k for g in zips for k in g]
    for key in keys:
        _check_reserved(key, "axis")
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup:
        raise StudyError(f"axis key '{dup}' appears twice (in axes and/or zip groups)")

    name = doc.get("name") or Path(source).stem
    if not isinstance(name, str) or not _EVAL_NAME.match(name):
        raise StudyError(f"{source}: study name '{name}' must use only letters, digits, '_', '.', '-'")
    study = Study(name=name, base=base, axes=axes, zip=zips, evals=_parse_evals(doc.get("evals"), base_dir),
                  description=str(doc.get("description") or ""),
                  out=str(doc["out"]) if doc.get("out") else None)
    study.runs = expand(study)
    return study


def load_study(path: str | Path) -> Study:
    """Read and expand a study file (a path, or a packaged study: ``studies/cpu-small.yaml``); every problem is a
    one-line StudyError."""
    path = _find(str(path), None, "study file")
    study = parse_study(_read_yaml(path, "study file"), str(path), base_dir=path.parent)
    if study.out is None and path.name == "study.yaml" and (path.parent / "runs").is_dir():
        study.out = str(path.parent)  # a study directory's own definition runs in that directory
    return study


def _resolve(values: dict[str, Any]) -> DictConfig:
    # One JSON-encoded override per top-level group: JSON is YAML, so strings, lists and dicts arrive with
    # their types intact, and the config module still names unknown keys and bad values in one line.
    nested = _nest(values)
    overrides = [f"{k}={json.dumps(v, default=str)}" for k, v in nested.items()]
    return C.load_config(None, overrides)


def expand(study: Study) -> list[StudyRun]:
    """The cartesian product of the axes (then zip groups), each resolved and given its run id."""
    dims: list[list[dict]] = [[{k: v} for v in vals] for k, vals in study.axes.items()]
    for group in study.zip:
        n = len(next(iter(group.values())))
        dims.append([{k: group[k][i] for k in group} for i in range(n)])
    runs: list[StudyRun] = []
    seen: dict[str, StudyRun] = {}
    spanning = spanning_runs([len(d) for d in dims])
    for index, combo in enumerate(itertools.product(*dims)):
        point: dict[str, Any] = {}
        for part in combo:
            point.update(part)
        try:
            cfg = _resolve({**study.base, **point})
        except C.ConfigError as e:
            where = " ".join(f"{k}={axis_text(v)}" for k, v in point.items()) or "the base config"
            raise StudyError(f"run {where}: {e}") from None
        rid = C.run_id(cfg)
        evals = [resolve_spec(eval_settings(e), cfg.data.source) for e in study.evals
                 if e.get(EVAL_RUNS, "all") == "all" or index in spanning]
        run = StudyRun(id=rid, index=index, axes=point, cfg=cfg, evals=evals)
        if rid in seen:
            raise StudyError(f"runs '{seen[rid].label()}' and '{run.label()}' resolve to the same config "
                             f"(run {rid}); remove the duplicate axis value")
        seen[rid] = run
        runs.append(run)
    return runs


def eval_settings(entry: dict) -> dict:
    """An eval entry as mimscale.evaluate reads it: without the study's own ``runs`` key."""
    return {k: v for k, v in entry.items() if k != EVAL_RUNS} if EVAL_RUNS in entry else entry


def spanning_runs(shape: list[int]) -> set[int]:
    """Grid positions (row-major over ``shape``, the order of ``expand``) of the ``spanning`` subset: every
    value of every axis at least once, in max(L, P) runs where L is the longest axis and P the number of
    combinations of the others. Run t of the subset pairs combination t mod P of the other axes (in grid
    order) with value t mod L of the longest axis (the first such axis on a tie): a 3 models x 4 data sizes
    x 2 lengths grid gives 6 of its 24 runs, each model, data size and length among them."""
    if not shape:
        return {0}
    longest = max(range(len(shape)), key=lambda i: (shape[i], -i))
    others = [n for i, n in enumerate(shape) if i != longest]
    n_other = 1
    for n in others:
        n_other *= n
    chosen = set()
    for t in range(max(shape[longest], n_other)):
        rest = list(_unravel(t % n_other, others))
        position = rest[:longest] + [t % shape[longest]] + rest[longest:]
        chosen.add(_ravel(position, shape))
    return chosen


def _unravel(i: int, shape: list[int]) -> list[int]:
    out = []
    for n in reversed(shape):
        out.append(i % n)
        i //= n
    return out[::-1]


def _ravel(position: list[int], shape: list[int]) -> int:
    i = 0
    for p, n in zip(position, shape):
        i = i * n + p
    return i


def images_of(cfg: DictConfig) -> int | None:
    """Images processed by a run (iters x global batch); None when the length is in epochs (needs |data|)."""
    t = cfg.train
    if t.iters > 0:
        return int(t.iters) * int(t.batch_size)
    if t.samples > 0:
        return -(-int(t.samples) // int(t.batch_size)) * int(t.batch_size)
    return None


def total_steps_of(cfg: DictConfig) -> int | None:
    images = images_of(cfg)
    return None if images is None else images // int(cfg.train.batch_size)
