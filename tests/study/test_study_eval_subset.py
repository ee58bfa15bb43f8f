"""An eval entry's ``runs: spanning`` evaluates a fixed subset of the grid holding every value of every axis; the
other runs do not have that eval (never run, never pending), and the analysis predicts it for them."""

import json

import pytest
from study_helpers import write_study

from mimscale.analysis import analyze
from mimscale.errors import StudyError
from mimscale.evaluate.config import spec_identity
from mimscale.study import load_study, store, study_main
from mimscale.study.spec import parse_study, spanning_runs

TOY = "study_helpers:toy_pretrain"


def _unravel(i, shape):
    out = []
    for n in reversed(shape):
        out.append(i % n)
        i //= n
    return out[::-1]


@pytest.mark.parametrize("shape, n", [([3, 4, 2], 6), ([2, 8], 8), ([4, 4], 4), ([5], 5), ([1, 1], 1), ([], 1)])
def test_spanning_holds_every_value_of_every_axis_in_max_of_longest_and_the_rest(shape, n):
    chosen = spanning_runs(shape)
    assert len(chosen) == n
    for axis, length in enumerate(shape):
        assert {_unravel(i, shape)[axis] for i in chosen} == set(range(length))


def test_the_demo_grid_fine_tunes_a_quarter_of_its_runs():
    assert sorted(spanning_runs([3, 4, 2])) == [0, 3, 12, 15, 16, 19]  # the rule is fixed: results stay valid


FRACTIONS = [0.1, 0.2, 0.3, 0.5, 0.7, 1.0]


def _doc(runs="spanning"):
    return {"name": "sub", "base": {"train.iters": 3},
            "axes": {"model.name": ["swinv2-cpu-t", "swinv2-cpu-s"], "data.fraction": FRACTIONS},
            "evals": [{"name": "knn", "task": "knn"}, {"name": "ft", "task": "finetune", "runs": runs}]}


def test_runs_outside_the_subset_do_not_have_the_eval_and_its_identity_is_unchanged():
    study = parse_study(_doc(), "sub.yaml")
    with_ft = [r for r in study.runs if any(e["name"] == "ft" for e in r.evals)]
    # model t % 2 with fraction t: positions (0, 0), (1, 1), (0, 2), (1, 3), (0, 4), (1, 5) of the 2 x 6 grid
    assert [r.index for r in with_ft] == sorted(spanning_runs([2, 6])) == [0, 2, 4, 7, 9, 11]
    assert {r.axes["model.name"] for r in with_ft} == {"swinv2-cpu-t", "swinv2-cpu-s"}
    assert sorted(r.axes["data.fraction"] for r in with_ft) == FRACTIONS
    assert all(len(r.evals) == 1 for r in study.runs if r not in with_ft)
    ft = next(e for e in with_ft[0].evals if e["name"] == "ft")
    assert "runs" not in ft and spec_identity(ft) == spec_identity({"name": "ft", "task": "finetune"})
    everyone = parse_study(_doc("all"), "sub.yaml")
    assert all(len(r.evals) == 2 for r in everyone.runs)
    assert [r.id for r in everyone.runs] == [r.id for r in study.runs]  # run ids never depend on evals


def test_a_bad_runs_value_is_one_line():
    with pytest.raises(StudyError, match=r"^evals\[1\] \(ft\) runs: 'half'; choose one of all, spanning$"):
        parse_study(_doc("half"), "sub.yaml")


def test_run_status_and_prediction_respect_the_subset(tmp_path, helper_env, capsys):
    path = write_study(tmp_path / "sub.yaml", _doc())
    out = tmp_path / "out"
    assert study_main(["run", str(path), "--out", str(out), "--run-fn", TOY]) == 0
    study = load_study(path)
    chosen = {r.id for r in study.runs if any(e["name"] == "ft" for e in r.evals)}
    assert len(chosen) == 6
    name = {r.id: store.run_dir(out, r.id).name for r in study.runs}  # the run column: directory names
    for r in study.runs:
        assert (store.run_dir(out, r.id) / "eval" / "ft.json").exists() == (r.id in chosen)
    capsys.readouterr()
    assert study_main(["status", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"done": 12}  # not "partial": ft is not theirs
    res = analyze(out, write=False, n_boot=20, fit_boot=3)
    ft = [r for r in res["prediction"]["rows"] if r["metric"] == "eval_ft_top1"]
    assert {r["run"] for r in ft if r["predicted"]} == {name[r.id] for r in study.runs if r.id not in chosen}
    assert {r["run"] for r in ft if not r["predicted"]} == {name[i] for i in chosen}
