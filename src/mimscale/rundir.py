"""The run directory: its layout, file and metric names, summary keys, checkpoint listing, and the atomic
writes and tolerant reads every layer uses. Torch-free, so light processes (the study runner's claims and
records, ``study status``, the analysis) use it without importing torch.

::

    RUN_DIR/config.yaml         resolved config (the run's identity)         written once, by pretrain
    RUN_DIR/provenance.json     versions, host, command, config schema
    RUN_DIR/subset.json         manifest of the training subset: a reference (counts, ids' hash, body path)
    RUN_DIR/heldout.json        manifest of the held-out set, the same way
    STORE/manifests/<sha>.json.gz   the ids of a manifest, once per study (``manifest_store``: the study
                                directory for a run inside one, else the run directory)
    RUN_DIR/excluded.json       unreadable images left out (held-out, training probe, folder scan), if any
    RUN_DIR/branch.json         {"trunk", "step"}: a run trained from another run's checkpoint (train/prefix.py)
    RUN_DIR/metrics.jsonl       one {"step", "split", "name", "value", "time"} object per line
    RUN_DIR/checkpoints/        step_XXXXXXX.pt (+ step_XXXXXXX.json meta), newest ``keep_last`` kept
    RUN_DIR/recon/              step_XXXXXXX.png reconstruction pictures
    RUN_DIR/tb/                 TensorBoard events (track: [tensorboard], the default)
    RUN_DIR/tracking.json       {"path"}: the path W&B / MLflow first tracked the run at (track: wandb, mlflow)
    RUN_DIR/summary.json        written last: the run is finished when it exists (keys: SUMMARY_KEYS)
    RUN_DIR/eval/<name>.json    downstream evaluation results
    RUN_DIR/status.json, error.txt, worker.log     written by the study runner

docs/RESULTS.md gives the schema of each file. Writes are temp file + fsync + rename: a reader (or a
resumed run after a kill) sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import glob
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, Any

# ---------------------------------------------------------------------------------------------- names


class RunState(str, Enum):
    """Where a run stands: ``summary.json``'s and ``status.json``'s "status", ``study status``'s column, the
    results table's ``status``. A ``str``: members compare equal to (and are written to files as) their values."""

    PENDING = "pending"  # nothing trained yet
    PARTIAL = "partial"  # checkpoints, or pre-training finished with an evaluation missing: a rerun resumes
    RUNNING = "running"  # claimed by a live process
    QUEUED = "queued"  # Slurm: its task waits in the queue
    DONE = "done"  # finished, every evaluation current
    FAILED = "failed"  # the last attempt raised; error.txt says why
    INTERRUPTED = "interrupted"  # the last attempt was stopped by a signal

    def __str__(self) -> str:  # "done", not "RunState.DONE", in messages, tables and CSV files
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


CONFIG, PROVENANCE, SUBSET, HELDOUT, EXCLUDED, BRANCH = (
    "config.yaml", "provenance.json", "subset.json", "heldout.json", "excluded.json", "branch.json")
METRICS, SUMMARY, STATUS, ERROR, WORKER_LOG = "metrics.jsonl", "summary.json", "status.json", "error.txt", "worker.log"
CHECKPOINTS, EVAL, RECON, TENSORBOARD = "checkpoints", "eval", "recon", "tb"
TRACKING = "tracking.json"  # {"path"}: where W&B / MLflow first tracked the run (train/tracking.py)
# Manifest bodies (data/manifest_store.py) live in STORE/manifests/, STORE from ``manifest_store``.
MANIFESTS = "manifests"
# A study directory's file names: STUDY/study.yaml, STUDY/runs/<run>/, STUDY/locks/<run_id>.lock (what they
# hold: study/store.py).
STUDY_FILE, STUDY_RUNS, STUDY_LOCKS = "study.yaml", "runs", "locks"

# Metric records: (split, name). The held-out and training-probe losses use the same name so a curve is
# selected by split alone.
TRAIN, VAL, TRAIN_PROBE = "train", "val", "train_probe"
# A trunk's evaluations for its branches only (train/prefix.py): kept apart so the trunk's own curve is the
# one it would have alone; a branch takes them as its VAL / TRAIN_PROBE.
SHARED_VAL, SHARED_TRAIN_PROBE = "shared_val", "shared_train_probe"
LOSS, LR, GRAD_NORM, IMAGES_PER_S, FLOPS_PER_S, SKIPPED_STEP, SKIPPED_FILES = (
    "loss", "lr", "grad_norm", "images_per_s", "flops_per_s", "skipped_step", "skipped_files")

# The keys of summary.json (docs/RESULTS.md says what each means).
SUMMARY_KEYS = (
    "status", "run_id", "model", "params", "data_size", "data_fraction", "iters", "global_batch",
    "epochs_equivalent", "final_val_loss", "final_val_step", "best_val_loss", "best_val_step",
    "initial_val_loss", "final_train_probe_loss", "final_train_loss", "images_per_s", "flops_per_image",
    "achieved_flops_per_s", "train_time_s", "skipped_steps", "skipped_files", "run_dir", "branched_from",
)

_STEP_FILE = re.compile(r"^step_(\d{7,})\.(pt|png)$")


def step_name(step: int, suffix: str) -> str:
    """``step_0000150.pt``: zero-padded so names sort by step."""
    return f"step_{int(step):07d}.{suffix}"


# ---------------------------------------------------------------------------------------------- run directory names

# A run directory's name: what the run is, in words a person reads in ``ls``, TensorBoard and report tables,
# then its id, which stays the run's identity: ``vit-cpu-m_f0.1_it2000-e10892ea78``. The data part is the
# fraction (``f0.1``), not an image count: the count needs the source scanned (a folder of a million files)
# and the held-out split taken out class by class, while the fraction is exact, free and the study's axis.
# Runs written before names were readable are directories named by the id alone; both are found by id.
_RUN_ID = re.compile(r"^[0-9a-f]{10}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")  # filesystem- and shell-safe on every platform
NAME_PART_MAX = 32  # characters per part, so a name stays short in a terminal column


def _part(text: Any) -> str:
    return _UNSAFE.sub("-", str(text)).strip("-.")[:NAME_PART_MAX] or "x"


def _number(v: Any) -> str:
    return f"{float(v):g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def run_label(cfg: Any) -> str:
    """``vit-cpu-m_f0.1_it2000``: model, data fraction and length (steps ``it``, epochs ``ep`` or samples ``s``)
    of a run's config (any object with ``model.name``, ``data.fraction`` and ``train.iters/epochs/samples``)."""
    t = cfg.train
    length = (f"it{int(t.iters)}" if t.iters > 0 else f"ep{_number(t.epochs)}" if t.epochs > 0
              else f"s{int(t.samples)}")
    return f"{_part(cfg.model.name)}_f{_part(_number(cfg.data.fraction))}_{length}"


def run_dir_name(cfg: Any, run_id: str) -> str:
    """A new run directory's name: :func:`run_label`, then the run id (the part a lookup matches)."""
    return f"{run_label(cfg)}-{run_id}"


def run_id_of(name: str) -> str:
    """The run id in a run directory's name: the part after the last "-" of a readable name, else the name
    (a directory named by the id alone, or by hand)."""
    head, sep, tail = str(name).rpartition("-")
    return tail if sep and head and _RUN_ID.match(tail) else str(name)


def find_run_dir(parent: Path, run_id: str) -> Path | None:
    """The existing directory of run ``run_id`` under ``parent``: ``<label>-<id>`` or (older) ``<id>``."""
    parent = Path(parent)
    old = parent / run_id
    if old.is_dir():
        return old
    found = sorted(p for p in parent.glob(f"*-{glob.escape(run_id)}") if p.is_dir())
    return found[0] if found else None


# ---------------------------------------------------------------------------------------------- atomic writes


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; run directories live on shared filesystems, so give them the usual mode.
FILE_MODE = 0o666 & ~_umask()


def _finished_temp(path: Path, write: Callable[[IO[bytes]], Any]) -> str:
    """``write(file)`` into a temp file beside ``path``, fsynced, with the usual mode; returns its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """``write(file)`` into a temp file beside ``path``, fsync, then rename: readers see old or new, never half."""
    path = Path(path)
    tmp = _finished_temp(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def create_exclusive(path: Path, write: Callable[[IO[bytes]], Any]) -> bool:
    """Like :func:`atomic_write`, but only if ``path`` does not exist (a hard link fails on an existing name,
    also on NFS). True if this call created it; False if it was there (and is left untouched)."""
    path = Path(path)
    tmp = _finished_temp(path, write)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


# ---------------------------------------------------------------------------------------------- reads


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``; None if it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def parse_jsonl(lines: list[str]) -> Iterator[dict]:
    """JSON objects of ``lines``; a malformed line (one being written, or cut by a kill) is skipped."""
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            yield rec


def read_jsonl(path: Path) -> list[dict]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    return list(parse_jsonl(lines))


def identity_matches(stored: Any, wanted: dict) -> bool:
    """Whether a stored identity holds ``wanted``: compared on ``wanted``'s keys only, so an identity written
    when it held more keys (every evaluation key, in mimscale 0.1) still matches."""
    return isinstance(stored, dict) and {k: stored.get(k) for k in wanted} == wanted


# ---------------------------------------------------------------------------------------------- manifest store


def manifest_store(run_dir) -> Path:
    """Where a run's manifest bodies go: its study directory when it is a study's run (``STUDY/runs/<id>/``
    beside ``STUDY/study.yaml``), so the study's runs share them; else the run directory itself. A plain
    ``runs/<name>/`` (pretrain's default ``out``) has no study.yaml above it and keeps its own."""
    path = Path(getattr(run_dir, "path", run_dir)).resolve()  # run_dir=. inside a study's run is that run
    study = path.parent.parent
    # study.yaml and locks/ both: a user's own study.yaml beside a plain runs/ folder is not a study directory
    if path.parent.name == STUDY_RUNS and (study / STUDY_FILE).is_file() and (study / STUDY_LOCKS).is_dir():
        return study
    return path


# ---------------------------------------------------------------------------------------------- the directory


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory; nothing is created until something is written."""

    path: Path

    def __post_init__(self):  # RunDir(a RunDir) is the same directory
        object.__setattr__(self, "path", Path(getattr(self.path, "path", self.path)))

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __fspath__(self) -> str:  # Path(run_dir), open(run_dir / ...), str(run_dir) all mean the directory
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    config = property(lambda self: self.path / CONFIG)
    provenance = property(lambda self: self.path / PROVENANCE)
    subset = property(lambda self: self.path / SUBSET)
    heldout = property(lambda self: self.path / HELDOUT)
    excluded = property(lambda self: self.path / EXCLUDED)
    branch = property(lambda self: self.path / BRANCH)
    metrics = property(lambda self: self.path / METRICS)
    summary = property(lambda self: self.path / SUMMARY)
    status = property(lambda self: self.path / STATUS)
    error = property(lambda self: self.path / ERROR)
    worker_log = property(lambda self: self.path / WORKER_LOG)
    checkpoints = property(lambda self: self.path / CHECKPOINTS)
    eval_dir = property(lambda self: self.path / EVAL)
    recon_dir = property(lambda self: self.path / RECON)
    tensorboard = property(lambda self: self.path / TENSORBOARD)
    tracking = property(lambda self: self.path / TRACKING)

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / step_name(step, "pt")

    def recon(self, step: int) -> Path:
        return self.recon_dir / step_name(step, "png")

    def eval_result(self, name: str) -> Path:
        return self.eval_dir / f"{name}.json"

    def _stepped(self, folder: Path, suffix: str) -> list[tuple[int, Path]]:
        if not folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in folder.iterdir()
                 if (m := _STEP_FILE.match(p.name)) and m.group(2) == suffix]
        return sorted(found)

    def list_checkpoints(self) -> list[tuple[int, Path]]:
        """(step, path) of every complete checkpoint, oldest first (temp files never match)."""
        return self._stepped(self.checkpoints, "pt")

    def latest_checkpoint(self) -> Path | None:
        found = self.list_checkpoints()
        return found[-1][1] if found else None

    def latest_recon(self) -> Path | None:
        found = self._stepped(self.recon_dir, "png")
        return found[-1][1] if found else None

    def read_summary(self) -> dict | None:
        return read_json(self.summary)

    def is_finished(self) -> bool:
        return self.summary.is_file()

    def eval_state(self, name: str) -> Path:
        """A fine-tuning evaluation's resumable state while it runs (removed when its result is written)."""
        return self.eval_dir / f"{name}.state.pt"

    def eval_is_current(self, name: str, identity: dict | None = None) -> bool:
        """Whether ``eval/<name>.json`` evaluated this finished run's final weights (a result of an intermediate
        checkpoint, from a ``finetune`` while pre-training went on, is stale) with the settings whose
        ``identity`` is given (a result of other settings under the same name is stale too)."""
        result, summary = read_json(self.eval_result(name)), self.read_summary()
        if result is None or summary is None:
            return False
        if identity is not None and not identity_matches(result.get("identity"), identity):
            return False
        if result.get("step") is None or (result.get("config") or {}).get("checkpoint"):
            return True  # init=random, or a checkpoint the evaluation names itself
        return result.get("step") == summary.get("iters")

    def eval_results(self) -> list[Path]:
        return sorted(self.eval_dir.glob("*.json")) if self.eval_dir.is_dir() else []

    def read_metrics(self) -> list[dict]:
        return read_jsonl(self.metrics)
