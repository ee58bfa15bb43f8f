"""``study status``: running runs first, then failed, waiting and done ones; ``--watch`` redraws until nothing
runs or Ctrl-C."""

import io

import pytest
from study_helpers import write_study

from mimscale.cli import main
from mimscale.study import init_study_dir, load_study, store
from mimscale.study.status import render_status, shown_order, status_rows, watch

DOC = {"name": "w", "base": {"train.iters": 5}, "axes": {"data.fraction": [0.25, 0.5, 1.0]}}


def test_rows_are_shown_running_failed_waiting_done_in_grid_order_within_each():
    rows = [{"run": str(i), "status": s} for i, s in
            enumerate(["done", "pending", "running", "failed", "pending", "partial", "queued", "weird"])]
    assert [r["run"] for r in shown_order(rows)] == ["2", "6", "3", "5", "1", "4", "0", "7"]


@pytest.fixture
def study_dir(tmp_path):
    study = load_study(write_study(tmp_path / "s.yaml", DOC))
    out = tmp_path / "out"
    init_study_dir(study, out)
    return study, out


def test_status_names_runs_readably_and_lists_the_running_one_first(study_dir):
    study, out = study_dir
    claim = store.try_claim(out, study.runs[2].id)
    try:
        text = render_status(study, out, status_rows(study, out))
    finally:
        claim.release()
    table = text.splitlines()[3:]
    assert [ln.split()[0] for ln in table] == [f"swinv2-cpu-s_f1_it5-{study.runs[2].id}",
                                                f"swinv2-cpu-s_f0.25_it5-{study.runs[0].id}",
                                                f"swinv2-cpu-s_f0.5_it5-{study.runs[1].id}"]
    assert [ln.split()[2] for ln in table] == ["running", "pending", "pending"]


def test_watch_redraws_until_nothing_runs(study_dir):
    study, out = study_dir
    claim = store.try_claim(out, study.runs[0].id)
    views = []

    def sleep(seconds):  # the runner finishes its run between two views
        views.append(seconds)
        claim.release()

    buf = io.StringIO()
    assert watch(study, out, 2.5, out=buf, sleep=sleep) == 0
    text = buf.getvalue()
    assert views == [2.5] and text.count("study w in") == 2 and "1 running" in text
    assert text.rstrip().endswith("nothing is running: stopped watching")
    assert "\x1b[" not in text  # not a terminal: the views one after another, no screen codes


def test_ctrl_c_stops_watching_cleanly(study_dir):
    study, out = study_dir
    claim = store.try_claim(out, study.runs[0].id)

    def interrupted(seconds):
        raise KeyboardInterrupt

    try:
        assert watch(study, out, 1.0, out=io.StringIO(), sleep=interrupted) == 0
    finally:
        claim.release()


def test_watch_refuses_a_bad_interval_and_json(study_dir, capsys):
    _, out = study_dir
    assert main(["study", "status", str(out), "--watch", "0"]) == 2
    assert "--watch takes a number of seconds > 0" in capsys.readouterr().err
    assert main(["study", "status", str(out), "--watch", "--json"]) == 2
    assert "use --json without --watch" in capsys.readouterr().err
    assert main(["study", "status", str(out), "--watch"]) == 0  # nothing runs: one view, then it returns
    assert "nothing is running" in capsys.readouterr().out


def test_progress_every_must_be_positive(tmp_path, capsys):
    study = write_study(tmp_path / "s.yaml", DOC)
    assert main(["study", "run", str(study), "--out", str(tmp_path / "o"), "--progress-every", "-1"]) == 2
    assert "--progress-every takes a number of seconds > 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
