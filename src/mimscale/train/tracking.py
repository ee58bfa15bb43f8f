"""Where a run's numbers go besides ``metrics.jsonl``: the experiment trackers named by the one key ``track``.

- ``tensorboard`` (the default): event files in ``RUN_DIR/tb/``. The run's identity config goes to the HParams
  view (a session start at the run's start, a session end when it finishes); its summary (best and final losses)
  and its evaluations are scalars beside the training curves, so they are the HParams table's metric columns.
- ``wandb``: Weights & Biases, one W&B run per run directory (its id is derived from the path the directory was
  first tracked at, recorded in ``RUN_DIR/tracking.json``, so a resumed run and its evaluations append to the same
  W&B run, also after the study or run directory has moved). ``WANDB_PROJECT`` (default ``mimscale``),
  ``WANDB_MODE`` and ``WANDB_DIR`` are read as W&B reads them.
- ``mlflow``: MLflow, one MLflow run per run directory (found again by its tag ``mimscale.run_dir``: that first
  path), in the experiment ``MLFLOW_EXPERIMENT_NAME`` (default ``mimscale``) of the store ``MLFLOW_TRACKING_URI``.

The tracker packages are optional and imported only when their sink is on. A missing ``tensorboard`` is a
warning (it is on by default); a missing ``wandb`` or ``mlflow`` that ``track`` asks for is an error before
training starts. Only the main process tracks.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import sys
from typing import Any

import yaml

from mimscale.config import TRACKERS, flatten, identity
from mimscale.errors import ConfigError
from mimscale.rundir import RunDir, create_exclusive, read_json

SINKS = TRACKERS  # declared with the key (config.py): the check and the openers below name the same sinks
DEFAULT_SINKS = ("tensorboard",)
# sink -> (module imported, what to install)
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"),
            "mlflow": ("mlflow", "mlflow-skinny")}
PROJECT = "mimscale"  # the W&B project and the MLflow experiment when the environment names none
RUN_DIR_TAG = "mimscale.run_dir"
# summary.json keys that are a run's final numbers (the HParams table's columns with the evaluations)
SUMMARY_METRICS = ("final_val_loss", "best_val_loss", "initial_val_loss", "final_train_loss",
                   "final_train_probe_loss", "epochs_equivalent", "params", "images_per_s")


def _installed(sink: str) -> bool:
    return importlib.util.find_spec(PACKAGES[sink][0]) is not None


def flat(d: dict) -> dict[str, Any]:
    """Dotted keys with values a tracker accepts: lists and empty mappings as text, None as ''."""
    return {k: v if isinstance(v, (bool, int, float, str)) else "" if v is None else str(v)
            for k, v in flatten(d).items()}


class TensorBoardSink:
    name = "tensorboard"

    def __init__(self, run_dir: RunDir, resume_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: drop the events a killed process logged after the checkpoint we resume from.
        self.writer = SummaryWriter(str(run_dir.tensorboard),
                                    purge_step=None if resume_step is None else resume_step + 1)
        self.where = f"TensorBoard: tensorboard --logdir {run_dir.tensorboard}"

    def log(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # as metrics.jsonl: a kill loses no buffered event

    def start(self, hparams: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        # Only the session start: without an experiment summary, the HParams view takes the union of every
        # run's hyper-parameters and offers every scalar tag as a metric column (a run-made experiment summary
        # would fix the columns to the first run it finds).
        _, session_start, _ = hparams_summaries(hparams, {})
        self.writer.file_writer.add_summary(session_start)
        self.writer.flush()

    def end(self) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        _, _, session_end = hparams_summaries({}, {})  # status: success
        self.writer.file_writer.add_summary(session_end)
        self.writer.flush()

    def close(self, finished: bool = True) -> None:
        self.writer.close()


def tracked_as(run_dir: RunDir) -> str:
    """The path the run directory was first tracked at (``RUN_DIR/tracking.json``, written then), not where it is
    now: W&B's run id and MLflow's tag come from it, so a study or run directory that has moved goes on in the
    same tracked runs."""
    recorded = read_json(run_dir.tracking)
    if isinstance(recorded, dict) and isinstance(recorded.get("path"), str):
        return recorded["path"]
    here = str(run_dir.path.resolve())
    if not create_exclusive(run_dir.tracking, lambda f: f.write(json.dumps({"path": here}).encode() + b"\n")):
        recorded = read_json(run_dir.tracking)  # an evaluation and the run opened their trackers at once
        if isinstance(recorded, dict) and isinstance(recorded.get("path"), str):
            return recorded["path"]
    return here


def wandb_id(run_dir: RunDir) -> str:
    """One W&B run per run directory: resumed processes and evaluations append to it, wherever it has moved."""
    return hashlib.sha256(tracked_as(run_dir).encode()).hexdigest()[:16]


class WandbSink:
    name = "wandb"

    def __init__(self, run_dir: RunDir, resume_step: int | None):
        import wandb

        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", PROJECT), name=run_dir.path.name,
                              id=wandb_id(run_dir), resume="allow", reinit="finish_previous",
                              config={RUN_DIR_TAG: tracked_as(run_dir)})
        self.where = None  # W&B prints where its run is itself
        # Every value carries its own step: a resumed run logs steps again and evaluations log epochs, which
        # W&B's own monotonic step would drop.
        self.run.define_metric("step", hidden=True)
        self.run.define_metric("*", step_metric="step")

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log({**values, "step": step})

    def start(self, hparams: dict[str, Any]) -> None:
        self.run.config.update(hparams, allow_val_change=True)

    def end(self) -> None:
        pass  # the summary's values are logged as scalars; W&B keeps the last of each as the run's summary

    def close(self, finished: bool = True) -> None:
        # A process that stops before the end (diverged, interrupted, crashed) is not a finished W&B run.
        self.run.finish(exit_code=0 if finished else 1)


class MlflowSink:
    name = "mlflow"

    def __init__(self, run_dir: RunDir, resume_step: int | None):
        from mlflow import MlflowClient

        self.client = MlflowClient()  # MLFLOW_TRACKING_URI, as MLflow reads it
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT)
        exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(name)
        where = tracked_as(run_dir)
        found = self.client.search_runs([exp_id], filter_string=f"tags.`{RUN_DIR_TAG}` = '{_quoted(where)}'",
                                        max_results=1)
        self.run_id = (found[0].info.run_id if found else
                       self.client.create_run(exp_id, run_name=run_dir.path.name,
                                              tags={RUN_DIR_TAG: where}).info.run_id)
        self.where = f"MLflow: run {self.run_id} in experiment {name!r} of {self.client.tracking_uri}"

    def log(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = _millis()
        metrics = [Metric(_mlflow_key(k), v, now, step) for k, v in values.items() if math.isfinite(v)]
        self.client.log_batch(self.run_id, metrics=metrics)

    def start(self, hparams: dict[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params  # a resumed run: params are write-once
        params = [Param(_mlflow_key(k), str(v)) for k, v in hparams.items() if _mlflow_key(k) not in existing]
        for i in range(0, len(params), 100):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def end(self) -> None:
        self.client.set_terminated(self.run_id, "FINISHED")

    def close(self, finished: bool = True) -> None:
        if not finished:  # diverged, interrupted or crashed: not left RUNNING (a resume ends FINISHED)
            self.client.set_terminated(self.run_id, "FAILED")


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _mlflow_key(key: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def _millis() -> int:
    import time

    return int(time.time() * 1000)


OPENERS = {"tensorboard": TensorBoardSink, "wandb": WandbSink, "mlflow": MlflowSink}


def missing_message(sink: str) -> str:
    """What a run that asks for ``sink`` without its package is told: what is missing and how to install it."""
    return (f"track has {sink} but {PACKAGES[sink][0]} is not installed "
            f"(pip install {PACKAGES[sink][1]}, or pip install 'mimscale[track]')")


def require_installed(sinks) -> None:
    """A ConfigError when ``sinks`` asks for ``wandb`` or ``mlflow`` and it is not installed: checked before a
    run builds anything (every rank) and by ``study plan`` / ``study run`` before any run starts."""
    for sink in sinks:
        if sink != "tensorboard" and not _installed(sink):
            raise ConfigError(missing_message(sink))


def check_installed(sinks) -> list[str]:
    """The sinks of ``sinks`` that can run here: a missing ``wandb`` or ``mlflow`` is a ConfigError (it was asked
    for), a missing ``tensorboard`` a one-line warning (it is on by default)."""
    require_installed(sinks)
    if "tensorboard" in sinks and not _installed("tensorboard"):
        print("[track] tensorboard is not installed: no TensorBoard events (pip install tensorboard, or "
              "track=[] to turn this off)", file=sys.stderr)
    return [s for s in sinks if _installed(s)]


def open_sinks(sinks, run_dir: RunDir, resume_step: int | None = None) -> list:
    """The trackers ``sinks`` names, open on ``run_dir`` (a tracker that cannot start is a ConfigError)."""
    opened = []
    for sink in check_installed(sinks):
        try:
            opened.append(OPENERS[sink](run_dir, resume_step))
        except Exception as e:  # a bad store URI, a W&B login: say which tracker, in one line
            for s in opened:
                s.close()
            raise ConfigError(f"track: {sink} cannot start: {_first_line(e)}") from None
    return opened


def _first_line(e: Exception) -> str:
    """A tracker's error in one line: its first line, or its type when it says nothing."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def each_sink(sinks: list, call, where: str) -> list:
    """``call(sink)`` on every sink; returns those that did not fail. A tracker that fails once it is open (a
    server gone mid-run, a full disk under its files) is dropped with a one-line warning and closed: the run
    goes on, and metrics.jsonl and the result files keep every value (``where`` says which)."""
    alive = []
    for sink in sinks:
        try:
            call(sink)
            alive.append(sink)
        except Exception as e:  # any tracker error: tracking is a copy, never a reason to stop a run
            print(f"[track] {sink.name} stopped tracking this run: {_first_line(e)} (every value is in {where})",
                  file=sys.stderr, flush=True)
            try:
                sink.close(False)
            except Exception:  # already failing; the warning above is what the user needs
                pass
    return alive


def run_hparams(cfg, run_id: str) -> dict[str, Any]:
    """The hyper-parameters a run is tracked with: its identity config, flattened, and its run id."""
    return {"run_id": run_id, **flat(identity(cfg))}


def summary_metrics(summary: dict) -> dict[str, float]:
    """The final numbers of ``summary.json`` that are numbers, as ``summary/<key>`` scalars."""
    return {f"summary/{k}": float(summary[k]) for k in SUMMARY_METRICS
            if isinstance(summary.get(k), (int, float)) and math.isfinite(summary[k])}


def run_sinks(run_dir: RunDir) -> tuple[str, ...]:
    """What ``track`` says in the run's config.yaml (an evaluation is tracked where its run is); the default when
    there is no config.yaml or it predates the key."""
    try:
        cfg = yaml.safe_load(run_dir.config.read_text())
    except (OSError, yaml.YAMLError):
        return DEFAULT_SINKS
    sinks = cfg.get("track") if isinstance(cfg, dict) else None
    if not isinstance(sinks, list):
        return DEFAULT_SINKS
    return tuple(s for s in sinks if s in SINKS)


def evaluation_scalars(result: dict) -> tuple[int, dict[str, float], list[tuple[int, dict[str, float]]]]:
    """An evaluation result as scalars: (step, ``eval/<name>/<metric>`` of its metrics, and per evaluated epoch
    (epoch, ``eval_epochs/<name>/<value>``)). The step is the pre-training step it evaluated, so the result sits
    at the end of the run's curves."""
    name = result["name"]
    final = {f"eval/{name}/{k}": float(v) for k, v in (result.get("metrics") or {}).items()
             if isinstance(v, (int, float)) and math.isfinite(v)}
    epochs = []
    for h in result.get("history") or []:
        values = {f"eval_epochs/{name}/{k}": float(v) for k, v in h.items()
                  if k not in ("epoch", "step") and isinstance(v, (int, float)) and math.isfinite(v)}
        epochs.append((int(h.get("epoch", len(epochs) + 1)), values))
    return int(result.get("step") or 0), final, epochs


def log_evaluation(run_dir: RunDir, result: dict) -> None:
    """Log an evaluation's result (its metrics, and its per-epoch history) to the run's trackers. A tracker that
    cannot start here is a one-line warning, not an error: the result is written already, and a failed
    evaluation would be rerun for nothing (its result is kept, so the tracker would still not get it)."""
    try:
        sinks = open_sinks(run_sinks(run_dir), run_dir)
    except ConfigError as e:
        print(f"[track] {result['name']}: not tracked ({e}); the result is in {run_dir.eval_result(result['name'])}",
              file=sys.stderr)
        return
    step, final, epochs = evaluation_scalars(result)
    where = str(run_dir.eval_result(result["name"]))

    def send(s) -> None:
        for epoch, values in epochs:
            s.log(epoch, values)
        s.log(step, final)

    each_sink(each_sink(sinks, send, where), lambda s: s.close(), where)


__all__ = ["SINKS", "DEFAULT_SINKS", "open_sinks", "each_sink", "check_installed", "require_installed", "run_hparams", "summary_metrics",
           "run_sinks", "log_evaluation", "evaluation_scalars", "flat"]
