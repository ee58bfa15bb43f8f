"""The study directory: one definition per directory, and claims that exactly one process wins."""

import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time

import pytest
from study_helpers import race_for_claim, write_study

from mimscale.cli import main
from mimscale.study import (
    StudyError,
    init_study_dir,
    load_study,
    load_study_dir,
    run_state,
    store,
    try_claim,
)

DOC = {"name": "s", "base": {"train.iters": 5}, "axes": {"data.fraction": [0.5, 1.0]},
       "evals": [{"name": "knn", "task": "knn"}]}


def test_study_yaml_is_written_once_and_a_different_study_is_refused(tmp_path, capsys):
    study = load_study(write_study(tmp_path / "a.yaml", DOC))
    out = tmp_path / "out"
    init_study_dir(study, out)
    original = (out / "study.yaml").read_bytes()
    assert load_study_dir(out).definition() == study.definition()
    assert [r.id for r in load_study_dir(out).runs] == [r.id for r in study.runs]
    init_study_dir(load_study(write_study(tmp_path / "a2.yaml", DOC)), out)  # same definition: fine
    (out / "runs" / study.runs[0].id).mkdir()
    other = write_study(tmp_path / "b.yaml", {**DOC, "axes": {"data.fraction": [0.5, 0.25]}})
    with pytest.raises(StudyError, match="different definition .*'axes'"):
        init_study_dir(load_study(other), out)
    assert main(["study", "run", str(other), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds study 's' with a different definition" in err
    assert (out / "study.yaml").read_bytes() == original
    assert sorted(p.name for p in (out / "runs").iterdir()) == [study.runs[0].id]  # nothing new written


def test_runs_without_study_yaml_are_not_adopted(tmp_path):
    (tmp_path / "out" / "runs" / "abc").mkdir(parents=True)
    with pytest.raises(StudyError, match="holds runs but no study.yaml"):
        init_study_dir(load_study(write_study(tmp_path / "a.yaml", DOC)), tmp_path / "out")


def test_claim_is_exclusive_and_released(tmp_path):
    a = try_claim(tmp_path, "r1")
    assert a is not None and try_claim(tmp_path, "r1") is None
    info = json.loads(store.lock_path(tmp_path, "r1").read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    assert store.lock_is_live(store.lock_path(tmp_path, "r1"))
    a.release()
    assert not store.lock_path(tmp_path, "r1").exists()
    b = try_claim(tmp_path, "r1")
    assert b is not None
    a.release()  # releasing a claim that is no longer ours leaves the new holder's file alone
    assert store.lock_path(tmp_path, "r1").exists()
    b.release()


def _write_lock(path, **info):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info))


def test_stale_claims_are_broken(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = store.lock_path(tmp_path, "r")
    _write_lock(path, pid=dead.pid, host=socket.gethostname(), owner=f"pid:{dead.pid}")
    assert not store.lock_is_live(path)
    claim = try_claim(tmp_path, "r")
    assert claim is not None and claim.info["pid"] == os.getpid()
    claim.release()
    # our own pid but another process start time: the pid was reused, the claim is stale
    _write_lock(path, pid=os.getpid(), host=socket.gethostname(), start="1")
    assert not store.lock_is_live(path)
    # another host: alive while its heartbeat (mtime) is fresh, stale after STALE_AFTER_S
    _write_lock(path, pid=1, host="elsewhere.example")
    assert store.lock_is_live(path) and try_claim(tmp_path, "r") is None
    old = time.time() - store.STALE_AFTER_S - 5
    os.utime(path, (old, old))
    assert not store.lock_is_live(path)
    assert try_claim(tmp_path, "r") is not None


def test_breaking_a_vanished_claim_never_removes_a_fresh_empty_one(tmp_path, monkeypatch):
    # The race behind a rare second winner: racer B reads the stale claim after racer A removed it (None, and
    # "not live" since the file is gone); A then creates its claim, still empty when B re-reads it under the
    # breaker. None == None must not count as "the same claim".
    path = store.lock_path(tmp_path, "r")
    path.parent.mkdir(parents=True)
    path.write_text("")  # A's claim: created (O_EXCL), not yet written
    monkeypatch.setattr(store, "lock_is_live", lambda p, info=None: False)  # B saw no file
    monkeypatch.setattr(store, "read_lock", lambda p: None)
    assert store._break_stale(path, "pid:1") is True  # B may retry, and its O_EXCL then fails
    assert path.exists()
    # An unreadable claim older than the grace period is a writer that died mid-write: removed.
    old = time.time() - store.UNREADABLE_GRACE_S - 1
    os.utime(path, (old, old))
    assert store._break_stale(path, "pid:1") is True and not path.exists()


def test_concurrent_claims_have_exactly_one_winner(tmp_path):
    ctx = mp.get_context("spawn")
    n = 4
    barrier, results, done = ctx.Barrier(n), ctx.Queue(), ctx.Barrier(n)
    # a stale claim to break first makes the race harder: everyone sees it stale at once
    _write_lock(store.lock_path(tmp_path, "contested"), pid=2**22 + 7, host=socket.gethostname())
    procs = [ctx.Process(target=race_for_claim, args=(str(tmp_path), barrier, results, done)) for _ in range(n)]
    for p in procs:
        p.start()
    wins = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    assert sum(wins) == 1, wins


def test_run_state_from_files(tmp_path):
    d = store.run_dir(tmp_path, "r")
    assert run_state(tmp_path, "r", ["knn"]) == "pending"
    (d / "checkpoints").mkdir(parents=True)
    (d / "checkpoints" / "step_0000010.pt").write_text("x")
    assert run_state(tmp_path, "r", ["knn"]) == "partial"
    store.record_failure(tmp_path, "r", "ValueError: x", "Traceback ...\nValueError: x")
    assert run_state(tmp_path, "r", ["knn"]) == "failed"
    (d / "summary.json").write_text(json.dumps({"status": "done"}))
    assert run_state(tmp_path, "r", ["knn"]) == "failed"  # the eval is what failed: still failed
    (d / "eval").mkdir()
    (d / "eval" / "knn.json").write_text("{}")
    assert run_state(tmp_path, "r", ["knn"]) == "done"
    claim = try_claim(tmp_path, "r")
    assert run_state(tmp_path, "r", ["knn"]) == "running"
    claim.release()
    store.record_attempt(tmp_path, "r", "done")
    assert not (d / "error.txt").exists() and json.loads((d / "status.json").read_text())["attempts"] == 2


def test_study_yaml_can_be_rerun_in_place_and_guards_against_changed_run_ids(tmp_path, capsys):
    study = load_study(write_study(tmp_path / "a.yaml", DOC))
    out = tmp_path / "out"
    init_study_dir(study, out)
    again = load_study(out / "study.yaml")  # the stored definition, run where it lies
    assert again.default_dir() == out and again.definition() == study.definition()
    init_study_dir(load_study(write_study(tmp_path / "b.yaml", {**DOC, "description": "notes"})), out)
    text = (out / "study.yaml").read_text()
    (out / "study.yaml").write_text(text.replace(study.runs[0].id, "0123456789"))
    with pytest.raises(StudyError, match="lists other run ids than this mimscale version computes"):
        load_study_dir(out)
    assert main(["study", "status", str(out)]) == 2
    assert "config schema changed" in capsys.readouterr().err


def _later_schema(monkeypatch, neutral: bool):
    """This mimscale, upgraded: the train section gains ``new_knob`` whose default 0.0 keeps the old behaviour."""
    from dataclasses import dataclass, field

    from mimscale import config as C

    @dataclass
    class LaterTrain(C.TrainConfig):
        new_knob: float = 0.0

    @dataclass
    class LaterConfig(C.Config):
        train: LaterTrain = field(default_factory=LaterTrain)

    monkeypatch.setattr(C, "Config", LaterConfig)
    if neutral:
        monkeypatch.setitem(C.ADDED_KEYS, "train.new_knob", (2, 0.0))


def test_a_study_directory_still_loads_after_a_config_key_with_a_neutral_default_is_added(tmp_path, monkeypatch):
    study = load_study(write_study(tmp_path / "a.yaml", DOC))
    out = tmp_path / "out"
    init_study_dir(study, out)
    done = store.run_dir(out, study.runs[0].id)
    done.path.mkdir(parents=True)
    done.summary.write_text(json.dumps({"status": "done"}))
    (done.eval_dir).mkdir()
    done.eval_result("knn").write_text("{}")
    ids = [r.id for r in study.runs]

    _later_schema(monkeypatch, neutral=True)
    upgraded = load_study_dir(out)  # no "finish it with the version that started it"
    assert [r.id for r in upgraded.runs] == ids
    assert run_state(out, ids[0], ["knn"]) == "done" and run_state(out, ids[1], ["knn"]) == "pending"
    assert "new_knob" in str(upgraded.runs[0].cfg.train)  # the new key is really in the schema
    changed = load_study(write_study(tmp_path / "c.yaml", {**DOC, "base": {"train.iters": 5, "train.new_knob": 1.0}}))
    assert changed.runs[0].id not in ids  # a value that changes what runs compute changes the id


def test_a_key_added_without_a_neutral_value_changes_ids_and_the_study_directory_says_so(tmp_path, monkeypatch):
    study = load_study(write_study(tmp_path / "a.yaml", DOC))
    out = tmp_path / "out"
    init_study_dir(study, out)
    _later_schema(monkeypatch, neutral=False)
    with pytest.raises(StudyError, match="lists other run ids"):
        load_study_dir(out)


def test_an_evaluation_of_an_intermediate_checkpoint_does_not_make_a_run_done(tmp_path):
    d = store.run_dir(tmp_path, "r")
    d.eval_dir.mkdir(parents=True)
    d.summary.write_text(json.dumps({"status": "done", "iters": 150}))
    d.eval_result("knn").write_text(json.dumps({"step": 140, "config": {"checkpoint": ""}}))
    assert run_state(tmp_path, "r", ["knn"]) == "partial" and not d.eval_is_current("knn")
    d.eval_result("knn").write_text(json.dumps({"step": 150, "config": {"checkpoint": ""}}))
    assert run_state(tmp_path, "r", ["knn"]) == "done"
    d.eval_result("knn").write_text(json.dumps({"step": None, "config": {"init": "random"}}))
    assert run_state(tmp_path, "r", ["knn"]) == "done"


def test_an_evaluation_with_other_settings_under_the_same_name_is_redone(tmp_path):
    from mimscale.evaluate.config import spec_identity

    d = store.run_dir(tmp_path, "r")
    d.eval_dir.mkdir(parents=True)
    d.summary.write_text(json.dumps({"status": "done", "iters": 150}))
    spec = {"name": "knn", "task": "knn", "knn_k": 20}
    d.eval_result("knn").write_text(json.dumps({"step": 150, "identity": spec_identity({**spec, "knn_k": 5})}))
    assert run_state(tmp_path, "r", [spec]) == "partial"
    assert run_state(tmp_path, "r", ["knn"]) == "done"  # by name only: any current result
    d.eval_result("knn").write_text(json.dumps({"step": 150, "identity": spec_identity(spec)}))
    assert run_state(tmp_path, "r", [spec]) == "done"
