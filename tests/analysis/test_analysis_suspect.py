"""Valid but suspect result tables get a note or a one-line refusal, and clean tables get none: rows repeated
exactly, two different rows for one run, negative SimMIM losses, inf and 1e308 losses (also in the report)."""

import numpy as np
import pandas as pd
import pytest
from synth_results import planted_overfit_frame

from mimscale.analysis import analyze
from mimscale.analysis.results import ResultsError, clean_runs


def frame() -> pd.DataFrame:
    df = planted_overfit_frame()
    df.insert(0, "run", [f"r{i:02d}" for i in range(len(df))])
    return df


def test_a_clean_table_has_no_note():
    clean, messages = clean_runs(frame())
    assert len(clean) == len(frame()) and messages == []


def test_a_table_repeated_twice_counts_each_run_once_with_a_note():
    df = frame()
    clean, messages = clean_runs(pd.concat([df, df], ignore_index=True))
    assert len(clean) == len(df)
    assert messages == [f"{len(df)} row(s) repeating another row exactly, run(s) "
                        + ", ".join(df["run"][:10]) + ": counted once"]
    without_names = df.drop(columns="run")  # no run column: exact repeats are still repeats
    clean, messages = clean_runs(pd.concat([without_names, without_names.iloc[:2]], ignore_index=True))
    assert len(clean) == len(df) and "2 row(s) repeating another row exactly, CSV line(s)" in messages[0]


def test_two_different_rows_for_one_run_are_refused():
    df = frame()
    other = df.iloc[[3]].copy()
    other["val_loss"] += 0.01
    with pytest.raises(ResultsError, match=r"^run r03 has 2 rows with different values \(in val_loss\)"):
        clean_runs(pd.concat([df, other], ignore_index=True))


def test_negative_losses_get_a_note():
    df = frame()
    df.loc[[1, 4], "val_loss"] = -0.2
    clean, messages = clean_runs(df)
    assert len(clean) == len(df)  # kept: the note asks to check the table
    assert messages == ["column val_loss: 2 negative value(s) (run(s) r01, r04): a SimMIM L1 loss cannot be "
                        "negative; check how this table was made"]


def test_inf_and_huge_losses_are_missing_with_a_note():
    df = frame()
    df.loc[0, "val_loss"], df.loc[1, "val_loss"], df.loc[2, "train_probe_loss"] = np.inf, 1e308, -np.inf
    clean, messages = clean_runs(df)
    assert len(clean) == len(df) - 2 and not clean["run"].isin(["r00", "r01"]).any()
    assert np.isnan(clean.loc[clean["run"] == "r02", "train_probe_loss"].item())
    assert "column val_loss: 2 value(s) not finite or above 1e+30 (inf, 1e+308, run(s) r00, r01) treated as " \
           "missing" in messages
    assert any(m.startswith("column train_probe_loss: 1 value(s) not finite") for m in messages)
    assert any(m.startswith("dropped 2 run(s) with a missing or non-numeric required value") for m in messages)


def test_report_on_inf_and_1e308_losses_draws_every_figure(tmp_path):
    from mimscale.report import build_report

    df = frame()
    df.loc[0:3, "val_loss"] = 1e308
    df.loc[4, "train_probe_loss"] = 1e308
    df.loc[5, "val_loss"] = np.inf
    df.to_csv(tmp_path / "r.csv", index=False)
    page = build_report(tmp_path / "r.csv", tmp_path / "report", n_boot=20, fit_boot=3).read_text()
    assert "failed" not in page
    res = analyze(tmp_path / "r.csv", write=False, n_boot=20, fit_boot=3)
    assert res["n_runs"] == len(df) - 5
