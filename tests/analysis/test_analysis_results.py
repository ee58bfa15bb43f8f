"""Loading results: CSV and study directories, the eval-file mapping, bad input."""

import json

import numpy as np
import pandas as pd
import pytest
from synth_results import make_study_dir, planted_overfit_frame

from mimscale.analysis import load_results, results_table
from mimscale.analysis.results import REQUIRED, ResultsError, clean_runs
from mimscale.rundir import RunDir


def test_csv_round_trip(tmp_path):
    df = planted_overfit_frame()
    df.to_csv(tmp_path / "r.csv", index=False)
    runs, curves = load_results(tmp_path / "r.csv")
    assert curves.empty and list(curves.columns) == ["run", "step", "split", "name", "value"]
    clean, msgs = clean_runs(runs)
    assert len(clean) == len(df) and msgs == []
    assert clean["run"].is_unique  # labels made up from (model, data_size, iters) when absent


def test_study_dir_mapping(tmp_path):
    study = make_study_dir(tmp_path / "s")
    table = results_table(study)
    # 24 finished runs + one without summary.json.
    assert len(table) == 25
    assert table.loc[table["run"] == "zz_running", "status"].item() == "incomplete"
    done = table[table["status"] == "done"]
    for col in (*REQUIRED, "train_probe_loss", "data_fraction", "epochs_equivalent", "seed"):
        assert done[col].notna().all(), col
    # {"metrics": {...}} -> eval_<file>_<metric>; {"name", "value"} -> eval_<file>.
    assert {"eval_linear_top1", "eval_linear_top5", "eval_knn"} <= set(table.columns)
    summary = json.loads((study / "runs" / "run000" / "summary.json").read_text())
    assert table.loc[table["run"] == "run000", "val_loss"].item() == summary["final_val_loss"]
    runs, curves = load_results(study)
    clean, msgs = clean_runs(runs)
    assert len(clean) == 24 and any("without a finished pre-training" in m for m in msgs)
    # 10 evaluations x 3 series per run; the truncated last line of every file is skipped.
    assert len(curves[curves["run"] == "run000"]) == 30
    assert set(curves["split"]) == {"train", "val", "train_probe"}
    assert RunDir(study / "runs" / "run000").latest_recon().name == "step_0000500.png"
    assert RunDir(study / "runs" / "zz_running").latest_recon() is None


def test_missing_columns_is_an_error(tmp_path):
    pd.DataFrame({"model": ["a"], "params": [1], "val_loss": [0.5]}).to_csv(tmp_path / "r.csv", index=False)
    runs, _ = load_results(tmp_path / "r.csv")
    with pytest.raises(ResultsError, match="missing required column.*data_size.*iters"):
        clean_runs(runs)


def test_non_numeric_values_are_dropped_with_a_message(tmp_path):
    df = planted_overfit_frame().astype({"val_loss": object, "eval_knn_top1": object})
    df.loc[3, "val_loss"] = "0.5x"
    df.loc[5, "eval_knn_top1"] = "oops"
    df.to_csv(tmp_path / "r.csv", index=False)
    clean, msgs = clean_runs(load_results(tmp_path / "r.csv")[0])
    assert len(clean) == len(df) - 1
    assert any("val_loss" in m and "'0.5x'" in m for m in msgs)
    assert any("CSV line(s) 5" in m for m in msgs)  # row 3 is line 5 (header, 1-based)
    assert any("eval_knn_top1" in m for m in msgs)
    assert np.isnan(clean["eval_knn_top1"]).sum() == 1


@pytest.mark.parametrize("content", ["", "model,params,data_size,iters,val_loss\n"])
def test_empty_input_is_an_error(tmp_path, content):
    (tmp_path / "r.csv").write_text(content)
    with pytest.raises(ResultsError):
        clean_runs(load_results(tmp_path / "r.csv")[0])


def test_not_a_study_or_csv(tmp_path):
    with pytest.raises(ResultsError, match="not a study directory"):
        load_results(tmp_path / "nothing-here")


def test_status_column_from_the_study_runner(tmp_path):
    df = planted_overfit_frame()
    df["status"] = "done"
    df.loc[0, "status"] = "partial"  # pre-training done, an evaluation missing: still analysed
    df.loc[[1, 2], "status"] = ["failed", "pending"]
    df.loc[[1, 2], "val_loss"] = np.nan
    clean, msgs = clean_runs(df)
    assert len(clean) == len(df) - 2
    assert any("'failed': 1" in m and "'pending': 1" in m for m in msgs)
