"""Fit on the runs a ``runs: spanning`` eval measures, predict the rest: the rows chosen from a results table, and
the errors on the synthetic paper grid that BENCHMARKS.md reports (benchmarks/prediction.py)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from paper_grid import paper_grid

from mimscale.analysis.predict import predict_metric, spanning_error, spanning_rows
from mimscale.analysis.results import clean_runs, load_results
from mimscale.study.spec import spanning_runs

METRIC = "eval_finetune_top1"
DEMO_QUICK = Path(__file__).resolve().parents[1] / "fixtures" / "demo-quick"


def test_the_demo_grid_measures_a_quarter_spanning_every_model_size_and_length():
    models = {"vit-cpu-s": 1e5, "vit-cpu-m": 4e5, "vit-cpu-l": 9e5}
    runs = pd.DataFrame([{"model": m, "params": p, "data_size": d, "iters": it}
                         for m, p in models.items() for d in (100, 200, 500, 1000) for it in (500, 2000)])
    picked = runs[spanning_rows(runs)]
    assert len(picked) == 6  # a quarter of 24
    assert set(picked["model"]) == set(models) and set(picked["data_size"]) == {100, 200, 500, 1000}
    assert set(picked["iters"]) == {500, 2000}
    # the same positions a study of the same axes (models by size) gives its spanning eval
    assert sorted(np.flatnonzero(spanning_rows(runs))) == sorted(spanning_runs([3, 4, 2]))


@pytest.mark.parametrize("seeds, loo, n_fit, n_test, mae, max_error", [
    (1, 0.003731788856072338, 14, 49, 0.003918215930581057, 0.009455258059310911),
    (2, 0.003013746358476422, 26, 100, 0.003255517590810576, 0.012200766208481761),
])
def test_paper_grid_errors_as_benchmarked(seeds, loo, n_fit, n_test, mae, max_error):
    runs, _ = clean_runs(paper_grid(seeds=seeds, top1_noise=0.004))
    assert predict_metric(runs, METRIC)[0]["loo_mae"] == pytest.approx(loo, rel=1e-6)
    err = spanning_error(runs, METRIC)
    assert (err["n_fit"], err["n_test"], err["features"]) == (n_fit, n_test, "val_loss + log10(params)")
    assert err["mae"] == pytest.approx(mae, rel=1e-6) and err["max_error"] == pytest.approx(max_error, rel=1e-6)
    assert err["mae"] < 1.1 * loo + 0.0005  # a quarter of the runs predicts the rest about as well as LOO on all


@pytest.mark.parametrize("seed, loo, loo_features, mae, max_error", [
    (0, 0.010142888087856645, "val_loss + log10(params)", 0.011159719187445027, 0.02429775496868393),
    (1, 0.009659355309961303, "val_loss", 0.009522137028179337, 0.01846391967768464),
])
def test_quick_demo_errors_as_benchmarked(seed, loo, loo_features, mae, max_error):
    runs, messages = clean_runs(load_results(DEMO_QUICK / f"seed{seed}.csv")[0])
    assert len(runs) == 8 and messages == []
    summary = predict_metric(runs, METRIC)[0]
    assert summary["loo_mae"] == pytest.approx(loo, rel=1e-6) and summary["features"] == loo_features
    err = spanning_error(runs, METRIC)  # 4 of the 2 x 2 x 2 runs: the longest axis has 2 values, the rest 4
    assert (err["n_fit"], err["n_test"], err["features"]) == (4, 4, "val_loss")
    assert err["mae"] == pytest.approx(mae, rel=1e-6) and err["max_error"] == pytest.approx(max_error, rel=1e-6)
