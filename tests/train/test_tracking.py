"""``track``: where a run's numbers go besides metrics.jsonl, read back from each tracker's own files.

TensorBoard (the default) through its EventAccumulator, HParams plugin data included; MLflow through its client
on a file store in tmp; W&B offline (WANDB_MODE=offline, WANDB_DIR in tmp) by reading the offline run's
``.wandb`` record log (W&B's API is online only). One tiny pre-training and one evaluation each.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mimscale.cli import main
from mimscale.config import load_config, run_id
from mimscale.rundir import RunDir
from mimscale.train import tracking

TINY = ["model.name=swinv2-cpu-t", "data.source=shapes:size=32,pool=128,seed=0", "data.val_size=32",
        "data.probe_size=16", "train.batch_size=8", "train.recon_images=0", "train.warmup_iters=2",
        "threads=1", "train.log_every=5", "train.iters=10", "train.eval_points=2"]
FIXTURE_CONFIG = Path(__file__).resolve().parents[1] / "fixtures" / "bbf7da2" / "pretrain" / "config.yaml"
EVAL = ["train_source=shapes:size=32,pool=60,seed=0,split=probe", "test_source=shapes:size=32,pool=30,seed=0,split=test",
        "batch_size=30", "threads=1"]


def _f32(v: float) -> float:
    return float(np.float32(v))  # TensorBoard stores scalars as float32


def _jsonl(run: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        out.setdefault(f"{r['split']}/{r['name']}", []).append((r["step"], r["value"]))
    return out


# --- the key ---------------------------------------------------------------------------------------------

def test_track_defaults_to_tensorboard_and_is_not_identity():
    base = load_config(None, ["train.iters=5"])
    assert list(base.track) == ["tensorboard"]
    for track in ("[]", "[tensorboard,wandb,mlflow]"):
        assert run_id(load_config(None, ["train.iters=5", f"track={track}"])) == run_id(base)
    # the key it replaces: true adds tensorboard; false (the old default, in every old config.yaml) says nothing
    assert list(load_config(None, ["train.iters=5", "track=[]", "train.tensorboard=true"]).track) == ["tensorboard"]
    assert list(load_config(None, ["train.iters=5", "train.tensorboard=false"]).track) == ["tensorboard"]
    assert list(load_config(FIXTURE_CONFIG).track) == ["tensorboard"]


@pytest.mark.parametrize("track", ["[tb]", "[wandb,wandb]"])
def test_a_bad_tracker_list_is_one_line_exit_2(track, capsys, tmp_path):
    assert main(["pretrain", *TINY, f"track={track}", f"run_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mimscale pretrain: error: track must be a list of distinct trackers from tensorboard, wandb, "
                   f"mlflow, got {track.strip('[]').split(',')}"]


def test_a_missing_tracker_package(monkeypatch, capsys, tmp_path):
    """Asked for and not installed: wandb / mlflow stop the run before compute (exit 2); tensorboard, on by
    default, is a warning and the run goes on without events."""
    missing = {"wandb", "tensorboard"}
    monkeypatch.setattr(tracking, "_installed", lambda sink: sink not in missing)
    assert main(["pretrain", *TINY, "track=[wandb]", f"run_dir={tmp_path / 'w'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"error: {tracking.missing_message('wandb')}")
    assert "track has wandb but wandb is not installed" in err and "'mimscale[track]'" in err
    assert not (tmp_path / "w" / "summary.json").exists()
    assert not list((tmp_path / "w").glob("subset.json"))  # refused before the data plan, not after it
    assert main(["pretrain", *TINY, f"run_dir={tmp_path / 't'}"]) == 0
    assert "[track] tensorboard is not installed" in capsys.readouterr().err
    assert (tmp_path / "t" / "summary.json").exists() and not RunDir(tmp_path / "t").tensorboard.exists()


def test_study_plan_names_a_missing_tracker_once_before_any_run(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(tracking, "_installed", lambda sink: sink != "mlflow")
    study = tmp_path / "s.yaml"
    base = dict(a.split("=", 1) for a in TINY if not a.startswith(("train.iters", "threads")))
    study.write_text(json.dumps({"name": "s", "base": {**base, "track": ["tensorboard", "mlflow"]},
                                 "axes": {"train.iters": [10, 20]}, "out": str(tmp_path / "out")}))
    assert main(["study", "plan", str(study), "--no-flops"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "track has mlflow but mlflow is not installed" in err[0]


def test_help_and_an_untracked_run_import_no_tracker(tmp_path):
    script = ("import sys\nfrom mimscale.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
              "print(sorted(m for m in ('wandb', 'mlflow') if m in sys.modules))")
    for argv in (["pretrain", "--help"], ["pretrain", *TINY, "train.iters=2", "track=[]", f"run_dir={tmp_path}"]):
        out = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == "[]"


# --- TensorBoard ------------------------------------------------------------------------------------------

def test_tensorboard_holds_curves_hparams_summary_and_evaluations(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2
    from tensorboard.plugins.hparams import metadata as hp_meta

    run = tmp_path / "run"
    assert main(["pretrain", *TINY, f"run_dir={run}"]) == 0  # the default: TensorBoard
    assert main(["finetune", str(run), "task=finetune", "epochs=2", "warmup_epochs=0.5", *EVAL]) == 0
    summary = json.loads((run / "summary.json").read_text())
    result = json.loads((run / "eval" / "finetune.json").read_text())

    acc = EventAccumulator(str(RunDir(run).tensorboard), size_guidance={"scalars": 0})
    acc.Reload()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    for tag, values in _jsonl(run).items():  # the training curves, exactly
        assert scalars[tag] == [(s, _f32(v)) for s, v in values]
    assert scalars["summary/best_val_loss"] == [(10, _f32(summary["best_val_loss"]))]
    assert scalars["summary/final_val_loss"] == [(10, _f32(summary["final_val_loss"]))]
    # the evaluation at the pre-training step it evaluated, and its per-epoch curve
    assert scalars["eval/finetune/top1"] == [(result["step"], _f32(result["metrics"]["top1"]))]
    assert scalars["eval/finetune/final_top1"] == [(result["step"], _f32(result["metrics"]["final_top1"]))]
    assert scalars["eval_epochs/finetune/top1"] == [(h["epoch"], _f32(h["top1"])) for h in result["history"]]
    assert [s for s, _ in scalars["eval_epochs/finetune/top1"]] == [1, 2]

    # HParams: the session start holds the identity config and the run id; the session end says success
    content = acc.PluginTagToContent(hp_meta.PLUGIN_NAME)
    start = hp_meta.parse_session_start_info_plugin_data(content[hp_meta.SESSION_START_INFO_TAG])
    end = hp_meta.parse_session_end_info_plugin_data(content[hp_meta.SESSION_END_INFO_TAG])
    assert start.hparams["run_id"].string_value == summary["run_id"]
    assert start.hparams["model.name"].string_value == "swinv2-cpu-t"
    assert start.hparams["train.iters"].number_value == 10
    assert start.hparams["data.fraction"].number_value == 1.0
    assert "threads" not in start.hparams and "track" not in start.hparams  # placement keys are not hparams
    assert end.status == api_pb2.STATUS_SUCCESS


def test_a_branch_tracks_its_whole_curve(tmp_path):
    """A branch (a shorter run forked from a longer one's checkpoint, train/branch.py) gets the curve up to the fork
    from the trunk's metrics.jsonl: its trackers get it too, so its TensorBoard curve is its metrics.jsonl."""
    prefix = ["train.schedule=step", "train.eval_budget=0", "train.eval_points=4"]
    trunk, branch = tmp_path / "trunk", tmp_path / "branch"
    assert main(["pretrain", *TINY, *prefix, "train.iters=20", "train.share_with=[12]", f"run_dir={trunk}"]) == 0
    assert main(["pretrain", *TINY, *prefix, "train.iters=12", f"train.branch_from={trunk}@10",
                 f"run_dir={branch}"]) == 0
    assert RunDir(branch).branch.exists()
    _assert_branch_curve(branch)
    # The branch's first process killed before its own first checkpoint: the next one replays the curve up to the
    # fork again, and TensorBoard holds it once.
    RunDir(branch).summary.unlink()
    for step, path in RunDir(branch).list_checkpoints():
        if step > 10:
            path.unlink()
    assert main(["pretrain", *TINY, *prefix, "train.iters=12", f"train.branch_from={trunk}@10",
                 f"run_dir={branch}"]) == 0
    _assert_branch_curve(branch)


def _assert_branch_curve(branch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(RunDir(branch).tensorboard), size_guidance={"scalars": 0})
    acc.Reload()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]
               if not t.startswith("summary/")}
    assert scalars == {tag: [(s, _f32(v)) for s, v in values] for tag, values in _jsonl(branch).items()}
    assert [s for s, _ in scalars["val/loss"]] == [0, 3, 6, 9, 12]


def test_tensorboard_off(tmp_path):
    run = tmp_path / "run"
    assert main(["pretrain", *TINY, "train.iters=2", "track=[]", f"run_dir={run}"]) == 0
    assert main(["finetune", str(run), "task=knn", *EVAL]) == 0  # the evaluation follows the run: untracked
    assert not RunDir(run).tensorboard.exists()


# --- W&B and MLflow ---------------------------------------------------------------------------------------

def test_the_tracked_identity_is_the_first_path_and_survives_a_move(tmp_path):
    """W&B's run id and MLflow's tag come from the path a run directory was first tracked at (tracking.json), so a
    moved study goes on in the same tracked runs; two directories are two tracked runs."""
    first, other = RunDir(tmp_path / "study" / "runs" / "a"), RunDir(tmp_path / "b")
    first.path.mkdir(parents=True)
    other.path.mkdir()
    wandb_run = tracking.wandb_id(first)
    assert json.loads(first.tracking.read_text()) == {"path": str(first.path.resolve())}
    (tmp_path / "study").rename(tmp_path / "moved")
    moved = RunDir(tmp_path / "moved" / "runs" / "a")
    assert tracking.tracked_as(moved) == str(first.path.resolve()) and tracking.wandb_id(moved) == wandb_run
    assert tracking.wandb_id(other) != wandb_run


def test_an_evaluation_whose_tracker_cannot_start_warns_in_one_line(tmp_path, monkeypatch, capsys):
    """The result is written before it is tracked: a tracker missing where the evaluation runs does not fail it."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.config.write_text("track: [wandb]\n")
    monkeypatch.setattr(tracking, "_installed", lambda sink: False)
    tracking.log_evaluation(run, {"name": "knn", "step": 10, "metrics": {"top1": 0.5}})
    assert capsys.readouterr().err.splitlines() == [
        f"[track] knn: not tracked ({tracking.missing_message('wandb')}); the result is in {run.eval_result('knn')}"]


class _FakeWandbRun:
    def __init__(self, calls):
        self.calls = calls

    def log(self, values):
        pass

    def finish(self, exit_code=None):
        self.calls.append(("wandb", exit_code))


class _FakeMlflowClient:
    def __init__(self, calls):
        self.calls = calls

    def log_batch(self, run_id, metrics=(), params=()):
        pass

    def set_terminated(self, run_id, status):
        self.calls.append(("mlflow", status))


@pytest.mark.parametrize("finishes", [True, False])
def test_a_run_that_stops_early_is_not_marked_finished(tmp_path, finishes):
    """W&B and MLflow mark a run finished only when it reached its end; one that diverged, was interrupted or
    crashed is closed as failed (a resume ends it FINISHED)."""
    from mimscale.train.metrics import MetricsWriter

    calls: list = []
    wandb_sink = object.__new__(tracking.WandbSink)
    wandb_sink.run = _FakeWandbRun(calls)
    mlflow_sink = object.__new__(tracking.MlflowSink)
    mlflow_sink.client, mlflow_sink.run_id = _FakeMlflowClient(calls), "r"
    writer = MetricsWriter(tmp_path / "metrics.jsonl")
    writer.sinks = [wandb_sink, mlflow_sink]
    if finishes:
        writer.finish({"iters": 3, "best_val_loss": 0.5})
    writer.close()
    assert calls == ([("mlflow", "FINISHED"), ("wandb", 0)] if finishes else [("wandb", 1), ("mlflow", "FAILED")])


class _GoneMlflowClient(_FakeMlflowClient):
    """A tracking server that answers until its third call, then is gone."""

    def log_batch(self, run_id, metrics=(), params=()):
        self.calls.append(("mlflow", "log"))
        if len(self.calls) >= 3:
            raise ConnectionError("HTTPConnectionPool(host='mlflow', port=5000): Max retries exceeded\nmore")


def test_a_tracker_that_fails_mid_run_is_dropped_with_one_line_and_the_run_goes_on(tmp_path, capsys):
    from mimscale.train.metrics import MetricsWriter

    calls: list = []
    sink = object.__new__(tracking.MlflowSink)
    sink.client, sink.run_id = _GoneMlflowClient(calls), "r"
    writer = MetricsWriter(tmp_path / "metrics.jsonl")
    writer.sinks = [sink]
    for step in range(1, 6):
        writer.log(step, "train", "loss", 1.0 / step)
    writer.finish({"iters": 5})
    writer.close()
    assert calls == [("mlflow", "log")] * 3 + [("mlflow", "FAILED")]  # closed once, as not finished
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 5  # every value kept
    assert capsys.readouterr().err.splitlines() == [
        "[track] mlflow stopped tracking this run: HTTPConnectionPool(host='mlflow', port=5000): Max retries "
        f"exceeded (every value is in {tmp_path / 'metrics.jsonl'})"]


def test_the_tracked_summary_numbers_are_summary_keys():
    from mimscale.rundir import SUMMARY_KEYS

    assert set(tracking.SUMMARY_METRICS) <= set(SUMMARY_KEYS)  # a renamed summary key must not vanish silently


def test_the_console_says_where_tensorboard_writes(tmp_path, capsys):
    """On stderr: stdout holds the JSON result line alone."""
    from mimscale.train.metrics import MetricsWriter

    run = RunDir(tmp_path / "run")
    writer = MetricsWriter(run.metrics, sinks=["tensorboard"], run_dir=run)
    writer.close()
    assert capsys.readouterr().err.splitlines() == [f"[track] TensorBoard: tensorboard --logdir {run.tensorboard}"]
    assert not run.tracking.exists()  # TensorBoard needs no tracked identity


def _wandb_records(path: Path) -> list:
    """The records of a W&B ``.wandb`` file: a 7-byte header, then a LevelDB-style log (32 KiB blocks of
    ``crc32 (4) | length (2, little-endian) | type (1) | data`` chunks; type 1 a whole record, 2-4 its parts)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, part, records = path.read_bytes(), 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a chunk header is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        part += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            rec = pb.Record()
            rec.ParseFromString(part)
            records.append(rec)
            part = b""
    return records


def _wandb_logged(wandb_dir: Path, run_id: str) -> tuple[dict, dict]:
    """(config, {key: [(step, value)]}) of every offline run of W&B id ``run_id`` under ``wandb_dir``."""
    config, history = {}, {}
    files = sorted(wandb_dir.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(files) == 2  # the pre-training and its evaluation, one W&B run id
    for f in files:
        for rec in _wandb_records(f):
            kind = rec.WhichOneof("record_type")
            if kind == "config":
                config.update({i.key: json.loads(i.value_json) for i in rec.config.update})
            elif kind == "history":
                row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
                for k, v in row.items():
                    if not k.startswith("_") and k != "step":
                        history.setdefault(k, []).append((row["step"], v))
    return config, history


def test_wandb_and_mlflow_hold_curves_hparams_summary_and_evaluations(tmp_path, monkeypatch, skip_or_fail):
    for sink in ("wandb", "mlflow"):
        if not tracking._installed(sink):
            skip_or_fail(f"{sink} is not installed: the dev extra holds it (make install)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "tracking-test")
    # MLflow 3 keeps its file store in maintenance mode behind this switch; the sqlite store needs the full
    # mlflow (sqlalchemy), not mlflow-skinny
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tracking-test")
    run = tmp_path / "run"
    assert main(["pretrain", *TINY, "track=[wandb,mlflow]", f"run_dir={run}"]) == 0
    assert main(["finetune", str(run), "task=knn", *EVAL]) == 0  # tracked where the run is
    summary = json.loads((run / "summary.json").read_text())
    result = json.loads((run / "eval" / "knn.json").read_text())
    jsonl = _jsonl(run)
    assert not RunDir(run).tensorboard.exists()

    from mlflow import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name("tracking-test")
    (found,) = client.search_runs([exp.experiment_id])
    assert found.info.run_name == "run" and found.info.status == "FINISHED"
    assert found.data.tags[tracking.RUN_DIR_TAG] == str(run.resolve())
    assert found.data.params["run_id"] == summary["run_id"] and found.data.params["model.name"] == "swinv2-cpu-t"
    for tag, values in jsonl.items():
        assert [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, tag)] == values
    assert found.data.metrics["summary/best_val_loss"] == summary["best_val_loss"]
    assert client.get_run(found.info.run_id).data.metrics["eval/knn/top1"] == result["metrics"]["top1"]

    config, history = _wandb_logged(tmp_path, tracking.wandb_id(RunDir(run)))
    assert config["run_id"] == summary["run_id"] and config["model.name"] == "swinv2-cpu-t"
    for tag, values in jsonl.items():
        assert history[tag] == values
    assert history["summary/best_val_loss"] == [(10, summary["best_val_loss"])]
    assert history["eval/knn/top1"] == [(result["step"], result["metrics"]["top1"])]

    # The study moved: an evaluation of the moved run goes on in the same W&B run and the same MLflow run.
    wandb_run = tracking.wandb_id(RunDir(run))
    moved = tmp_path / "moved"
    run.rename(moved)
    assert main(["finetune", str(moved), "task=linear", "linear_epochs=2", *EVAL]) == 0
    linear = json.loads((moved / "eval" / "linear.json").read_text())
    assert tracking.wandb_id(RunDir(moved)) == wandb_run
    logged = [json.loads(i.value_json) for f in tmp_path.glob(f"wandb/offline-run-*-{wandb_run}*/run-*.wandb")
              for rec in _wandb_records(f) if rec.WhichOneof("record_type") == "history"
              for i in rec.history.item if (i.key or "/".join(i.nested_key)) == "eval/linear/top1"]
    assert logged == [linear["metrics"]["top1"]]  # in the W&B run of the run's first path
    (again,) = client.search_runs([exp.experiment_id])
    assert again.info.run_id == found.info.run_id
    assert again.data.metrics["eval/linear/top1"] == linear["metrics"]["top1"]
