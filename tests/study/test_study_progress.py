"""The study runner's progress view (``study/progress.py``): rates per model over every watched step, the
evaluations in the ETA, a steady shown ETA, and the lines a terminal and a log file get."""

import io
import json

import pytest

from mimscale.rundir import RunDir
from mimscale.study.progress import ConsoleView, StudyProgress, model_key
from mimscale.study.spec import parse_study

DOC = {"name": "p", "base": {"train.iters": 100},
       "axes": {"model.name": ["vit-cpu-s", "vit-cpu-m"], "data.fraction": [0.5, 1.0]}}


@pytest.fixture
def runs():
    return parse_study(DOC, "test").runs  # s 0.5, s 1.0, m 0.5, m 1.0


def _tracker(runs, tmp_path, workers=2) -> StudyProgress:
    t = StudyProgress(len(runs), workers)
    for r in runs:
        t.add_pending(r)
    t.started(runs[0], RunDir(tmp_path / runs[0].id), now=0.0)
    t.started(runs[2], RunDir(tmp_path / runs[2].id), now=0.0)
    return t


def test_the_rate_is_every_watched_step_of_a_model_not_the_last_interval(runs, tmp_path):
    t = _tracker(runs, tmp_path)
    t.observe(runs[0].id, 10, 10.0)
    assert t.rate(runs[0]) is None  # one look: no interval yet
    assert t.predicted_s() is None
    t.observe(runs[0].id, 20, 20.0)  # 1 s/step
    t.observe(runs[0].id, 30, 40.0)  # a slow interval (a validation): 2 s/step
    t.observe(runs[0].id, 40, 45.0)  # a fast one: 0.5 s/step
    assert t.rate(runs[0]) == pytest.approx(35 / 30)  # 35 s over 30 steps, whatever the last interval was
    assert t.rate(runs[2]) == pytest.approx(35 / 30)  # an unmeasured model: the measured models' mean
    t.observe(runs[2].id, 5, 10.0)
    t.observe(runs[2].id, 15, 40.0)  # 3 s/step
    assert t.rate(runs[2]) == pytest.approx(3.0)
    assert t.rate(runs[3]) == pytest.approx(3.0)
    # left: s-run 60 steps, m-run 85 steps, s pending 100, m pending 100; no run finished: no overhead yet
    work = 60 * 35 / 30 + 85 * 3 + 100 * 35 / 30 + 100 * 3
    assert t.predicted_s() == pytest.approx(max(work / 2, 85 * 3))


def test_records_of_an_earlier_attempt_are_no_sample(runs, tmp_path):
    t = StudyProgress(4, 1)
    t.started(runs[0], RunDir(tmp_path / "a"), now=1000.0)
    t.observe(runs[0].id, 50, 10.0)  # written before this runner started it (a resumed run)
    t.observe(runs[0].id, 60, 1010.0)
    t.observe(runs[0].id, 70, 1020.0)
    assert t.rate(runs[0]) == pytest.approx(1.0)


def test_evaluations_enter_the_eta_once_a_run_finished(runs, tmp_path):
    t = _tracker(runs, tmp_path)
    t.observe(runs[0].id, 0, 0.0)
    t.observe(runs[0].id, 100, 100.0)  # 1 s/step; the run trains to its end at 100 s
    t.finished(runs[0].id, ok=True, now=130.0)  # and spends 30 s outside its steps (evaluations)
    assert t.done == 1 and t.overhead() == pytest.approx(30.0)
    assert t.run_eta_s(t.running[runs[2].id]) == pytest.approx(100 * 1.0 + 30)
    t.observe(runs[2].id, 100, 100.0)
    assert t.run_lines(now=100.0)[0].endswith("step 100/100 100%  evaluating  ETA 0:00:30")
    assert t.run_lines(now=120.0)[0].endswith("evaluating  ETA 0:00:10")  # counts down while it evaluates


def test_a_starting_run_s_eta_counts_down_before_its_first_step(runs, tmp_path):
    t = _tracker(runs, tmp_path)
    t.observe(runs[0].id, 0, 1.0)
    t.observe(runs[0].id, 10, 11.0)  # 1 s/step, also the unmeasured m-model's estimate
    starting = t.running[runs[2].id]  # still at step 0 (importing, building its data)
    assert t.run_eta_s(starting, now=20.0) == pytest.approx(100.0)  # its 100 steps: never below them
    t.finished(runs[0].id, ok=True, now=130.0)  # 100 steps at 1 s/step + 30 s of start-up and evaluations
    assert t.run_eta_s(starting, now=20.0) == pytest.approx(130.0 - 20.0)
    assert t.run_eta_s(starting, now=25.0) == pytest.approx(130.0 - 25.0)
    assert "evaluations not measured" not in t.headline(now=130.0)


def test_a_run_too_short_to_watch_gives_its_model_s_rate_from_its_wall_time(runs, tmp_path):
    t = _tracker(runs, tmp_path)
    t.finished(runs[0].id, ok=True, now=50.0)  # never observed: 100 steps in 50 s, evaluations included
    assert t.rate(runs[0]) == pytest.approx(0.5) and t.overhead() == 0.0
    t.finished(runs[2].id, ok=False, now=60.0)
    assert (t.done, t.failed, len(t.running)) == (1, 1, 0)


def test_the_shown_eta_moves_gradually_to_a_new_prediction(runs, tmp_path):
    t = StudyProgress(1, 1)
    t.started(runs[0], RunDir(tmp_path / "a"), now=0.0)
    t.observe(runs[0].id, 0, 0.0)
    t.observe(runs[0].id, 10, 10.0)  # 1 s/step: 90 s left
    assert t.eta_s(now=10.0) == pytest.approx(90.0)
    t.observe(runs[0].id, 20, 40.0)  # now 40 s / 20 steps = 2 s/step: 160 s left, predicted end 200
    assert t.eta_s(now=40.0) == pytest.approx(0.3 * 200 + 0.7 * 100 - 40)


def test_a_log_file_gets_a_line_every_interval_or_tenth(runs, tmp_path):
    t = StudyProgress(4, 2)
    t.started(runs[0], RunDir(tmp_path / runs[0].id), now=0.0)
    out = io.StringIO()
    view = ConsoleView(t, out, every_s=60.0, tty=False)
    view.tick(now=1.0)
    assert out.getvalue() == ""  # nothing moved yet, and the interval has not passed
    t.observe(runs[0].id, 5, 1.0)
    view.tick(now=2.0)
    assert out.getvalue() == ""  # 5 of 100 steps: still in the first tenth
    t.observe(runs[0].id, 12, 8.0)
    view.tick(now=9.0)
    first = out.getvalue().splitlines()
    assert first[0].startswith("[study] 0/4 done, 1 running") and first[1].split()[1:4] == ["step", "12/100", "12%"]
    assert first[1].split()[0] == runs[0].id  # the directory's name (here the test's id-named directory)
    view.tick(now=30.0)
    assert out.getvalue().splitlines() == first  # same tenth, interval not passed
    view.tick(now=69.5)
    assert len(out.getvalue().splitlines()) == 4  # the interval passed: a line although nothing moved


def test_a_terminal_gets_the_block_redrawn_under_the_messages(runs, tmp_path):
    t = StudyProgress(4, 2)
    out = io.StringIO()
    view = ConsoleView(t, out, tty=True)
    t.started(runs[0], RunDir(tmp_path / "vit-cpu-s_f0.5_it100-x"), now=0.0)
    view.log("start   vit-cpu-s_f0.5_it100-x")
    text = out.getvalue()
    assert text.startswith("start   vit-cpu-s_f0.5_it100-x\n[study] 0/4 done, 1 running")
    assert text.endswith("  vit-cpu-s_f0.5_it100-x  step 0/100   0%  ETA -\n")
    view.log("done")
    assert out.getvalue()[len(text):].startswith("\x1b[2F\x1b[J" + "done\n[study]")  # the old block erased
    view.close()
    assert out.getvalue().endswith("\x1b[2F\x1b[J")


def test_model_key_is_what_makes_a_step_cost_the_same(runs):
    assert model_key(runs[0]) == model_key(runs[1]) != model_key(runs[2])


def test_poll_reads_the_newest_step_of_each_running_run(runs, tmp_path):
    t = StudyProgress(4, 1)
    d = RunDir(tmp_path / "run")
    d.path.mkdir()
    t.started(runs[0], d, now=100.0)
    t.poll()  # no metrics yet: nothing to read
    assert t.running[runs[0].id].step == 0
    lines = [{"step": s, "split": "train", "name": "loss", "value": 1.0, "time": 100.0 + 2 * s} for s in (10, 20)]
    d.metrics.write_text("".join(json.dumps(r) + "\n" for r in lines[:1]))
    t.poll()
    d.metrics.write_text("".join(json.dumps(r) + "\n" for r in lines))
    t.poll()
    assert t.running[runs[0].id].step == 20 and t.rate(runs[0]) == pytest.approx(2.0)


def test_a_run_another_runner_finished_leaves_the_waiting_count_and_the_eta(runs, tmp_path):
    t = _tracker(runs, tmp_path)
    t.observe(runs[0].id, 10, 10.0)
    t.observe(runs[0].id, 20, 20.0)  # 1 s/step for every model
    before = t.predicted_s()
    t.settled_elsewhere(runs[1].id)  # pending, finished by the other process on this directory
    t.settled_elsewhere(runs[1].id)  # seen twice: counted once
    t.settled_elsewhere(runs[0].id)  # running here, not pending: not this call's to count
    assert (t.done, len(t.pending), len(t.running)) == (1, 1, 2)
    assert t.predicted_s() == pytest.approx(before - 100 / 2)  # its 100 steps left the shared work
