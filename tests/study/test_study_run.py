"""The local executor through real processes: failures, shared directories, SIGKILL, Ctrl-C, tables."""

import json
import signal
from pathlib import Path

import pandas as pd
from study_helpers import kill_all, study_cli, toy_log, wait_until, write_study

from mimscale.study import load_study, run_state, store, study_main

TOY = "study_helpers:toy_pretrain"


def _doc(iters=6, fractions=(0.25, 0.5, 1.0), models=("swinv2-cpu-t", "swinv2-cpu-s"), evals=True):
    doc = {"name": "toy", "base": {"train.iters": iters},
           "axes": {"model.name": list(models), "data.fraction": list(fractions)}}
    if evals:
        doc["evals"] = [{"name": "knn", "task": "knn"}]
    return doc


def _all_json_parses(root: Path) -> int:
    n = 0
    for p in root.rglob("*"):
        if p.is_file() and (p.suffix in (".json", ".lock") or p.name.endswith(".pt")):
            json.loads(p.read_text())
            n += 1
        if p.suffix == ".jsonl":
            for line in p.read_text().splitlines():
                json.loads(line)
    return n


def test_a_failing_run_is_recorded_and_the_others_finish(tmp_path, helper_env, capsys):
    path = write_study(tmp_path / "s.yaml", _doc())
    out = tmp_path / "out"
    code = study_main(["run", str(path), "--out", str(out), "--workers", "2",
                       "--run-fn", "study_helpers:failing_on_small_data"])
    assert code == 1
    err = capsys.readouterr().err
    study = load_study(path)
    bad = [r.id for r in study.runs if r.axes["data.fraction"] == 0.25]
    assert f"2 run(s) failed: {', '.join(sorted(bad, key=err.index))}" in err
    done_lines = [line for line in err.splitlines() if "] done    " in line]
    assert len(done_lines) == 4 and all("; study ETA 0:00:" in line for line in done_lines[:-1])
    for r in study.runs:
        state = run_state(out, r.id, ["knn"])
        if r.id in bad:
            assert state == "failed"
            text = (store.run_dir(out, r.id).path / "error.txt").read_text()
            assert "ValueError: boom: fraction 0.25 too small" in text and "loading data ..." in text
            record = json.loads((store.run_dir(out, r.id).path / "status.json").read_text())
            assert record["error"] == "ValueError: boom: fraction 0.25 too small" and record["attempts"] == 1
        else:
            assert state == "done"
    assert not list((out / "locks").iterdir())
    # status shows them; a rerun (here with a working function) retries exactly the failed ones
    assert study_main(["status", str(out), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows["counts"] == {"failed": 2, "done": 4}
    failed_rows = [r for r in rows["runs"] if r["status"] == "failed"]
    assert {r["run"] for r in failed_rows} == set(bad) and all("boom" in r["error"] for r in failed_rows)
    assert study_main(["run", str(path), "--out", str(out), "--skip-failed", "--run-fn", TOY]) == 0
    assert {run_state(out, r.id, ["knn"]) for r in study.runs} == {"done", "failed"}
    assert study_main(["run", str(path), "--out", str(out), "--run-fn", TOY]) == 0
    assert {run_state(out, r.id, ["knn"]) for r in study.runs} == {"done"}
    assert not (store.run_dir(out, bad[0]).path / "error.txt").exists()
    assert json.loads((store.run_dir(out, bad[0]).path / "status.json").read_text())["attempts"] == 2


def test_two_runners_on_one_directory_lose_nothing_and_run_nothing_twice(tmp_path, helper_env):
    path = write_study(tmp_path / "s.yaml", _doc(fractions=(0.1, 0.2, 0.5, 1.0), evals=False))
    out, log = tmp_path / "out", tmp_path / "exec.log"
    env = {"TOY_LOG": log, "TOY_STEP_S": "0.3"}
    procs = [study_cli(["run", str(path), "--out", str(out), "--workers", "2", "--run-fn",
                        "study_helpers:counting"], **env) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    study = load_study(path)
    executed = [rid for rid, _ in toy_log(log)]
    assert sorted(executed) == sorted(r.id for r in study.runs)  # each run exactly once
    assert len({pid for _, pid in toy_log(log)}) >= 2  # and the work was shared
    assert all(run_state(out, r.id, []) == "done" for r in study.runs)
    assert not list((out / "locks").iterdir())
    assert _all_json_parses(out) >= 2 * len(study.runs)
    assert not list(out.rglob("*.tmp"))


def _results(out: Path) -> pd.DataFrame:
    assert study_main(["results", str(out)]) == 0
    return pd.read_csv(out / "results.csv").set_index("run").sort_index()


def test_sigkilled_study_resumes_only_what_remained_and_matches_an_uninterrupted_one(tmp_path, helper_env):
    # one long run and two short ones: with two workers, short runs finish while the long one is mid-way
    doc = _doc(models=("swinv2-cpu-t",), fractions=(0.25,))
    doc["zip"] = [{"seed": [0, 1, 2], "train.iters": [60, 8, 8]}]
    doc["base"] = {}
    path = write_study(tmp_path / "s.yaml", doc)
    out, log = tmp_path / "killed", tmp_path / "exec.log"
    proc = study_cli(["run", str(path), "--out", str(out), "--workers", "2", "--run-fn", TOY],
                     TOY_LOG=log, TOY_STEP_S="0.05")
    study = load_study(path)

    def some_done_and_some_partial():
        states = [run_state(out, r.id, ["knn"]) for r in study.runs]
        partial = [r for r in study.runs if any((store.run_dir(out, r.id).path / "checkpoints").glob("*.pt"))
                   and not (store.run_dir(out, r.id).path / "summary.json").exists()]
        return "done" in states and bool(partial)

    wait_until(some_done_and_some_partial, proc)
    kill_all(proc, out)
    before = toy_log(log)
    done_before = {r.id for r in study.runs if (store.run_dir(out, r.id).path / "summary.json").exists()}
    partial = {r.id: max(s for rid, s in before if rid == r.id) for r in study.runs
               if r.id not in done_before and any(rid == r.id for rid, _ in before)}
    assert done_before and partial and len(done_before) < len(study.runs)
    summaries = {rid: (store.run_dir(out, rid).path / "summary.json").read_bytes() for rid in done_before}

    rerun = study_cli(["run", str(path), "--out", str(out), "--workers", "2", "--run-fn", TOY], TOY_LOG=log)
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert f"{len(done_before)} of {len(study.runs)} runs already finished" in stderr
    after = toy_log(log)[len(before):]
    assert not {rid for rid, _ in after} & done_before  # finished runs were not touched
    assert {rid: summaries[rid] for rid in done_before} == {
        rid: (store.run_dir(out, rid).path / "summary.json").read_bytes() for rid in done_before}
    for rid, last in partial.items():  # partial runs resumed from their checkpoint (at most 1 step redone)
        first = min(s for r, s in after if r == rid)
        assert last <= first <= last + 1, (rid, last, first)
    assert all(run_state(out, r.id, ["knn"]) == "done" for r in study.runs)

    ref = tmp_path / "ref"
    assert study_main(["run", str(path), "--out", str(ref), "--workers", "2", "--run-fn", TOY]) == 0
    a, b = _results(out), _results(ref)
    cols = ["model.name", "data.fraction", "seed", "train.iters", "status", "val_loss", "best_val_loss",
            "eval_knn_top1"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert (a["status"] == "done").all() and len(a) == 3


def test_ctrl_c_stops_cleanly_and_a_rerun_continues(tmp_path, helper_env):
    path = write_study(tmp_path / "s.yaml", _doc(iters=30, fractions=(0.5,)))
    out = tmp_path / "out"
    proc = study_cli(["run", str(path), "--out", str(out), "--workers", "2", "--run-fn", TOY],
                     TOY_STEP_S="0.1")
    study = load_study(path)
    wait_until(lambda: all(any((store.run_dir(out, r.id).path / "checkpoints").glob("*.pt")) for r in study.runs), proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted: 0 of 2 runs done; run the same command again to continue" in stderr
    assert not list((out / "locks").iterdir())
    for r in study.runs:
        assert run_state(out, r.id, ["knn"]) == "partial"
        assert json.loads((store.run_dir(out, r.id).path / "status.json").read_text())["status"] == "interrupted"
    assert study_main(["run", str(path), "--out", str(out), "--run-fn", TOY]) == 0
    assert all(run_state(out, r.id, ["knn"]) == "done" for r in study.runs)


def test_status_and_results_tables(tmp_path, helper_env, capsys):
    path = write_study(tmp_path / "s.yaml", _doc(iters=5, fractions=(0.5, 1.0)))
    out = tmp_path / "out"
    study = load_study(path)
    init = study_main(["run", str(path), "--out", str(out), "--run-fn", TOY])
    assert init == 0
    # make one run look in flight: no summary, a live claim, metrics with a step, val loss and throughput
    live = study.runs[0]
    d = store.run_dir(out, live.id).path
    for name in ("summary.json", "eval/knn.json"):
        (d / name).unlink()
    (d / "checkpoints" / "step_0000005.pt").rename(d / "checkpoints" / "step_0000002.pt")
    (d / "metrics.jsonl").write_text(
        json.dumps({"step": 2, "split": "train", "name": "images_per_s", "value": 64.0, "time": 1.0}) + "\n" +
        json.dumps({"step": 2, "split": "val", "name": "loss", "value": 0.75, "time": 1.0}) + "\n")
    claim = store.try_claim(out, live.id)
    capsys.readouterr()
    assert study_main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4 runs, 3 done, 1 running" in text
    table = text.splitlines()[2:]
    # the running run first, under its readable name: model, data fraction, length, then its id
    assert table[1].split()[0] == f"swinv2-cpu-t_f0.5_it5-{live.id}"
    # 3 steps left x global batch 64 / 64 img/s = 3 s
    assert table[1].split()[1:] == ["swinv2-cpu-t", "0.5", "running", "2/5", "0.7500", "64", "0:00:03"]
    assert [ln.split()[3] for ln in table[2:]] == ["done"] * 3
    claim.release()
    assert study_main(["results", str(out), "--out", str(tmp_path / "r.csv")]) == 0
    runs = pd.read_csv(tmp_path / "r.csv")
    curves = pd.read_csv(tmp_path / "r_curves.csv")
    assert list(runs.columns[:5]) == ["run", "run_id", "model.name", "data.fraction", "status"]
    assert list(runs["run_id"]) == [r.id for r in study.runs]
    assert list(runs["run"]) == [store.run_dir(out, r.id).name for r in study.runs]
    assert runs["run"][0] == f"swinv2-cpu-t_f0.5_it5-{live.id}"
    assert list(runs["status"]) == ["partial", "done", "done", "done"]
    done = runs[runs["status"] == "done"].iloc[0]
    assert done["iters"] == 5 and done["params"] == 1000 and done["data_size"] == 1000 * done["data.fraction"]
    assert done["eval_knn_top1"] == round(1 - done["val_loss"], 6)
    assert done["best_val_loss"] == done["val_loss"]
    assert list(curves.columns) == ["run", "step", "split", "name", "value"]
    assert len(curves) == 3 * 5 + 2 and set(curves["run"]) == set(runs["run"])
