"""`mimscale analyze`: the JSON document, the tables, exit codes on bad input."""

import json

import pandas as pd
import pytest
import yaml
from synth_results import make_study_dir, planted_overfit_frame

from mimscale.analysis import analyze
from mimscale.cli import main

FAST = ["--n-boot", "100", "--fit-boot", "10"]


def _run(capsys, argv):
    rc = main(["analyze", *argv, *FAST])
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_document(tmp_path, capsys):
    planted_overfit_frame().to_csv(tmp_path / "r.csv", index=False)
    rc, out, err = _run(capsys, [str(tmp_path / "r.csv"), "--out", str(tmp_path / "t"), "--json"])
    assert rc == 0
    doc = json.loads(out)  # one JSON document, nothing else on stdout
    for key in ("correlation", "overfitting", "fits", "selection", "data_gain", "summary", "messages", "config"):
        assert key in doc, key
    c = doc["correlation"][0]
    assert {"group", "metric", "n", "pearson", "spearman", "kendall", "pearson_ci", "spearman_ci"} <= set(c)
    assert {"model", "data_size", "iters", "val_loss", "flag", "reason", "gap"} <= set(doc["overfitting"][0])
    assert {"per_model", "joint"} == set(doc["fits"])
    assert doc["config"]["ci_level"] == 0.95 and doc["config"]["seed"] == 0
    for name in ("results", "correlation", "overfitting", "fits_per_model", "fits_joint", "data_gain", "selection"):
        assert not pd.read_csv(tmp_path / "t" / f"{name}.csv").empty, name
    assert "no validation curves" in err  # messages go to stderr, never into the JSON stream


def test_study_dir_default_out(tmp_path, capsys):
    study = make_study_dir(tmp_path / "s")
    rc, out, _ = _run(capsys, [str(study), "--tolerance", "0.01"])
    assert rc == 0 and "Overfitting" in out
    assert (study / "analysis" / "overfitting.csv").is_file()


def test_summary_numbers_come_from_the_data(tmp_path):
    planted_overfit_frame().to_csv(tmp_path / "r.csv", index=False)
    res = analyze(tmp_path / "r.csv", tmp_path / "t", n_boot=100, fit_boot=10)
    text = " ".join(res["summary"])
    assert "3 of 24 settings" in text and "tiny-l at 100 images, 2,000 it" in text
    gain = next(g for g in res["data_gain"] if g["model"] == "tiny-l" and g["iters"] == 2000)
    assert f"{gain['gain']:+.4f} (tiny-l)" in text
    spear = next(c for c in res["correlation"] if c["group"] == "all" and c["metric"] == "eval_linear_top1")
    assert f"Spearman {spear['spearman']:.2f}" in text


@pytest.mark.parametrize("content, why", [
    ("model,params,val_loss\na,1,0.5\n", "missing required column"),
    ("", "cannot read"),
    ("model,params,data_size,iters,val_loss\na,x,y,z,w\n", "no usable runs"),
])
def test_nothing_to_analyse_exits_2(tmp_path, capsys, content, why):
    (tmp_path / "r.csv").write_text(content)
    rc, out, err = _run(capsys, [str(tmp_path / "r.csv"), "--out", str(tmp_path / "t"), "--json"])
    assert rc == 2 and out == ""
    assert why in err and len(err.strip().splitlines()) == 1


def test_missing_input_exits_2(tmp_path, capsys):
    rc, _, err = _run(capsys, [str(tmp_path / "nope.csv")])
    assert rc == 2 and "not a study directory" in err


def test_partial_input_still_analysed(tmp_path, capsys):
    # Two usable runs (one row is non-numeric): too few for correlations, enough for a table.
    df = planted_overfit_frame().iloc[:3].astype({"val_loss": object})
    df.loc[2, "val_loss"] = "nan?"
    df.to_csv(tmp_path / "r.csv", index=False)
    rc, out, err = _run(capsys, [str(tmp_path / "r.csv"), "--out", str(tmp_path / "t"), "--json"])
    assert rc == 0
    doc = json.loads(out)
    assert doc["n_runs"] == 2 and len(doc["overfitting"]) == 2
    assert all("at least 3" in c["message"] for c in doc["correlation"])
    assert all("needs at least 3 sizes" in f["message"] for f in doc["fits"]["per_model"])
    assert any("non-numeric" in m for m in doc["messages"])
    assert "non-numeric" in err


def test_a_studys_fine_tuning_top1_is_the_headline_and_headline_is_checked(tmp_path, capsys):
    root = make_study_dir(tmp_path / "s")
    doc = yaml.safe_load((root / "study.yaml").read_text())
    doc["evals"] = [{"name": "ft", "task": "finetune"}, {"name": "linear", "task": "linear"}]
    (root / "study.yaml").write_text(yaml.safe_dump(doc))
    for run in (root / "runs").iterdir():
        linear = run / "eval" / "linear.json"
        if linear.exists():  # fine-tuned top-1 planted as a copy of the linear probe's
            top1 = json.loads(linear.read_text())["metrics"]["top1"]
            (run / "eval" / "ft.json").write_text(json.dumps({"metrics": {"top1": top1, "final_top1": top1}}))
    res = analyze(root, write=False, n_boot=50, fit_boot=5)
    assert res["headline_metrics"] == ["eval_ft_top1"]
    corr = next(f for f in res["paper_findings"] if f["finding"] == "validation loss predicts downstream accuracy")
    assert list(corr["numbers"]) == ["eval_ft_top1"] and "eval_linear_top1" in corr["other_metrics"]
    res = analyze(root, write=False, n_boot=50, fit_boot=5, headline=["eval_linear_top1"])
    assert res["headline_metrics"] == ["eval_linear_top1"]
    assert main(["analyze", str(root), "--headline", "eval_nope_top1"]) == 2
    assert "--headline eval_nope_top1: not a metric of this input" in capsys.readouterr().err
