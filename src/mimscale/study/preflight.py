"""Every check of a study that can be made before compute, beside the evaluations' own (``eval_check.py``): the
images each run's data fraction selects and its held-out count, a training subset smaller than one batch, an
evaluation whose training data is too small for its batch or its k, model names, the trackers asked for, and the disk space the
runs' checkpoints need. ``study plan`` and ``study run`` print every problem at once, in seconds, so that
nothing fails after other runs have trained.

Each data source is built (a folder: listed, never decoded) once for the whole study, whatever the number of
runs and evaluations reading it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from mimscale.errors import UserError
from mimscale.study import store
from mimscale.study.spec import Study, StudyRun, total_steps_of

# Checkpoints needing more than this share of the free space are written, with a warning.
DISK_WARN_SHARE = 0.8


@dataclass
class Preflight:
    images: dict[str, dict] = field(default_factory=dict)  # run id -> {"train", "heldout", "pool", "source"}
    eval_images: dict[tuple[str, str], dict] = field(default_factory=dict)  # (run id, eval) -> {"train", "test"}
    disk: dict | None = None  # {"needed", "free", "per_checkpoint", "checkpoints", "runs", "path"}
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def where(spec: str) -> str:
    """`` (relative to DIR)`` for a source given by a relative path: the folder it was resolved against."""
    from mimscale.data.sources import parse_spec

    try:
        path = parse_spec(spec).get("path")
    except UserError:
        path = None
    if not path or os.path.isabs(os.path.expanduser(str(path))):
        return ""
    return f" (a relative path: resolved against the working directory {Path.cwd()})"


class Sources:
    """Data sources by spec, each built once; a spec that fails keeps its one-line error."""

    def __init__(self):
        self._built: dict[str, object] = {}

    def get(self, spec: str):
        if spec not in self._built:
            from mimscale.data.sources import build_source

            try:
                self._built[spec] = build_source(spec)
            except (UserError, OSError) as e:
                self._built[spec] = UserError(" ".join(str(e).split()) + where(spec))
        found = self._built[spec]
        if isinstance(found, UserError):
            raise found
        return found


def _grouped(found: dict[str, list[str]], study: Study) -> list[str]:
    """message -> run ids: one line per message, naming the runs unless it is every run."""
    lines = []
    for message, ids in found.items():
        who = "" if len(ids) == len(study.runs) else f"run{'s' if len(ids) > 1 else ''} {', '.join(ids)}: "
        lines.append(who + message)
    return lines


def _pretraining_images(study: Study, sources: Sources, out: Preflight) -> None:
    """Training images per run (its fraction of the pool) and held-out images, as ``train/inputs.py`` selects
    them (``data.plan_data``): nested class-stratified subsets, computed once per source and subset seed."""
    from mimscale.data.subsets import make_subsets

    problems: dict[str, list[str]] = {}
    groups: dict[tuple, list[StudyRun]] = {}
    for run in study.runs:
        d = run.cfg.data
        groups.setdefault((str(d.source), str(d.val_source or ""), int(d.subset_seed)), []).append(run)
    for (spec, val_spec, seed), runs in groups.items():
        key = "data.source"  # the key a problem is reported under
        try:
            source = sources.get(spec)
            key = "data.val_source"
            val_source = sources.get(val_spec) if val_spec else None
            key = "data.source"
            fractions = sorted({float(r.cfg.data.fraction) for r in runs})
            manifests = make_subsets(source, fractions, seed, holdout=None if val_source else "auto")
        except UserError as e:
            problems.setdefault(f"{key}: {e}", []).extend(r.id for r in runs)
            continue
        _warn_split_root(spec, source, out)
        counts = {m.fraction: len(m.ids) for m in manifests if m.split == "train"}
        # The subsets of one source, seed and pool are nested (data.subsets): two fractions select the same
        # images exactly when they select as many, and the data-size axis has fewer points than it seems.
        by_count: dict[int, list[float]] = {}
        for f in sorted(counts):
            by_count.setdefault(counts[f], []).append(f)
        out.warnings += [f"data.fraction {' and '.join(f'{f:g}' for f in same)} of {spec} select the same {n} "
                         f"images: their runs differ only in name; keep one of them"
                         for n, same in by_count.items() if len(same) > 1]
        held = next((len(m.ids) for m in manifests if m.split == "heldout"), None)
        if held is None:  # the source's own validation split, or data.val_source
            held = len((val_source or source.validation()).ids)
        pool = len(source.ids) - (0 if val_source or source.validation() is not None else held)
        for run in runs:
            d, t = run.cfg.data, run.cfg.train
            n = counts[float(d.fraction)]
            used_held = min(held, int(d.val_size)) if d.val_size > 0 else held
            out.images[run.id] = {"train": n, "heldout": used_held, "pool": pool, "source": spec}
            # The training sampler takes whole batches of batch_size / accum_steps images (over all processes)
            # and drops an epoch's partial last one: a subset smaller than that has no batch at all.
            need = int(t.batch_size) // int(t.accum_steps)
            if n < need:
                problems.setdefault(
                    f"data.fraction={d.fraction:g} selects {n} of the {pool} training images of {spec}, fewer than "
                    f"one batch (train.batch_size {t.batch_size}"
                    f"{f' / train.accum_steps {t.accum_steps}' if t.accum_steps > 1 else ''}); lower "
                    f"train.batch_size to at most {n * int(t.accum_steps)} or use a larger fraction", []).append(run.id)
    out.problems += _grouped(problems, study)


def _warn_split_root(spec: str, source, out: Preflight) -> None:
    """data.source at ROOT/train beside a ROOT/val: the runs hold out part of ROOT/train and leave ROOT/val unused
    (and the evaluations without test_source have no test split); folder:ROOT is what was meant, mostly."""
    from mimscale.data.sources import is_split_layout

    described = source.describe()
    top = Path(str(described.get("path", "")))
    # Only where folder:ROOT would read the splits: a ROOT holding other folders too is read whole, val/ included,
    # and then ROOT/train is the right choice (eval_check warns about the test images in the pre-training data).
    if (described.get("kind") == "folder" and top.name == "train" and (top.parent / "val").is_dir()
            and is_split_layout(top.parent)):
        out.warnings.append(f"data.source {spec} is a train/ folder beside {top.parent / 'val'}: with "
                            f"data.source: folder:{top.parent} the runs pre-train on all of train/ and hold out "
                            f"val/, and the evaluations test on it")


def _eval_images(study: Study, sources: Sources, out: Preflight, world: int) -> None:
    """Train and test images of every evaluation, and what its task needs of them: a fine-tuning step needs an
    image for each process and accumulation step; kNN needs at least k training images. An evaluation whose
    config or data fails is left to ``eval_check`` (it names the problem)."""
    from mimscale.data.sources import parse_spec
    from mimscale.evaluate.config import TUNED, from_spec
    from mimscale.evaluate.data import DEFAULT_TEST, DEFAULT_TRAIN
    from mimscale.evaluate.engine import steps_per_epoch

    problems: dict[str, list[str]] = {}
    warnings: dict[str, list[str]] = {}
    configs: dict[str, object] = {}  # each distinct entry resolved once, whatever the number of runs
    for run in study.runs:
        for spec in run.evals:
            key = json.dumps(spec, sort_keys=True, default=str)
            try:
                if key not in configs:
                    try:
                        configs[key] = from_spec(spec)
                    except UserError as e:
                        configs[key] = e
                if isinstance(configs[key], UserError):
                    continue
                cfg = configs[key]
                size = int(cfg.img_size) or int(run.cfg.data.img_size)
                if not cfg.train_source and not cfg.test_source:  # the built-in pools: counted, not generated
                    n, n_test = (int(parse_spec(s.format(size=size))["pool"]) for s in (DEFAULT_TRAIN, DEFAULT_TEST))
                else:
                    train = sources.get(cfg.train_source or DEFAULT_TRAIN.format(size=size))
                    test = sources.get(cfg.test_source) if cfg.test_source else train.validation()
                    if test is None:
                        continue
                    n, n_test = len(train.ids), len(test.ids)
            except UserError:
                continue
            out.eval_images[(run.id, spec["name"])] = {"train": n, "test": n_test, "task": cfg.task,
                                                       "epochs": int(cfg.epochs), "img_size": size}
            name = spec["name"]
            if cfg.task in TUNED:
                parts = world * int(cfg.accum_steps)
                if cfg.task == "finetune" and cfg.drop_last and n < int(cfg.batch_size):
                    continue  # no full batch to keep: refused by eval_check (evaluate.engine.check_epoch)
                if steps_per_epoch(n, int(cfg.batch_size), parts) == 0:
                    problems.setdefault(f"eval '{name}': its {n} training images are fewer than one per process "
                                        f"and accumulation step ({parts}); a fine-tuning epoch would have no step",
                                        []).append(run.id)
                elif n < int(cfg.batch_size):
                    warnings.setdefault(f"eval '{name}': {n} training images, fewer than its batch_size "
                                        f"{cfg.batch_size}: each epoch is one step of {n} images", []).append(run.id)
            if cfg.task == "knn" and n < int(cfg.knn_k):
                problems.setdefault(f"eval '{name}': knn_k {cfg.knn_k} is more than its {n} training images; "
                                    f"set knn_k to at most {n}", []).append(run.id)
    out.problems += _grouped(problems, study)
    out.warnings += _grouped(warnings, study)


def _model_names(study: Study, out: Preflight) -> None:
    from mimscale.models.registry import model_kwargs

    bad: dict[str, list[str]] = {}
    for run in study.runs:
        try:
            model_kwargs(str(run.cfg.model.name))
        except UserError as e:
            bad.setdefault(f"model.name: {e}", []).append(run.id)
    out.problems += _grouped(bad, study)


def _trackers(study: Study, out: Preflight) -> None:
    """A tracker the runs ask for (``track``) that is not installed, once for the study, not run by run."""
    from mimscale.train.tracking import require_installed

    bad: dict[str, list[str]] = {}
    for run in study.runs:
        try:
            require_installed(list(run.cfg.track))
        except UserError as e:
            bad.setdefault(str(e), []).append(run.id)
    out.problems += _grouped(bad, study)


def checkpoints_kept(cfg: DictConfig, train_images: int | None) -> int:
    """How many checkpoints a run holds at once at most: ``train.keep_last`` and the newest one written before
    the oldest is pruned; with ``keep_last: 0`` every checkpoint step."""
    t = cfg.train
    if t.keep_last > 0:
        return int(t.keep_last) + 1
    steps = total_steps_of(cfg)
    if steps is None and train_images:  # a length in epochs
        steps = int(float(t.epochs) * train_images // int(t.batch_size))
    steps = steps or 1
    every = t.ckpt_every if t.ckpt_every > 0 else t.eval_every
    return max(1, steps // int(every)) if every > 0 else int(t.eval_points)


def nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _disk(study: Study, study_dir: Path, out: Preflight) -> None:
    """Checkpoint bytes of the runs whose pre-training is not finished (weights + AdamW state per parameter, times the checkpoints
    kept per run) against the free space of the study directory's filesystem."""
    from mimscale.study.cost import CHECKPOINT_BYTES_PER_PARAM, checkpoint_params, human

    todo = [r for r in study.runs if not store.run_dir(study_dir, r.id).summary.exists()]  # pre-training to do
    needed, largest, kept_max = 0, 0, 0
    for run in todo:
        params = checkpoint_params(run.cfg)
        if params is None:
            continue
        per = params * CHECKPOINT_BYTES_PER_PARAM
        kept = checkpoints_kept(run.cfg, (out.images.get(run.id) or {}).get("train"))
        needed += per * kept
        largest, kept_max = max(largest, per), max(kept_max, kept)
    path = nearest_existing(study_dir)
    free = shutil.disk_usage(path).free
    out.disk = {"needed": needed, "free": free, "runs": len(todo), "per_checkpoint_max": largest,
                "checkpoints_per_run_max": kept_max, "path": str(path)}
    what = (f"the checkpoints of {len(todo)} run(s) need about {human(needed, 'B')} (up to {kept_max} per run of "
            f"at most {human(largest, 'B')}: weights and AdamW state), and {path} has {human(free, 'B')} free")
    if needed > free:
        out.problems.append(f"{what}; free space, lower train.keep_last or choose another --out")
    elif needed > DISK_WARN_SHARE * free:
        out.warnings.append(f"{what}: it is close")


def preflight(study: Study, study_dir: Path, world: int = 1, disk: bool = True, sources: Sources | None = None
              ) -> Preflight:
    """Every check before compute (see the module docstring); ``world``: processes per run (the evaluations'
    fine-tuning splits its batch over them); ``sources``: shared with ``eval_check`` so each is built once."""
    out, sources = Preflight(), Sources() if sources is None else sources
    _model_names(study, out)
    _trackers(study, out)
    _pretraining_images(study, sources, out)
    _eval_images(study, sources, out, world)
    if disk:
        _disk(study, study_dir, out)
    return out
