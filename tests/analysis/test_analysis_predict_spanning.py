"""Fit on the runs a ``runs: spanning`` eval measures, predict the rest: the rows chosen from a results table, and
the errors on the synthetic paper grid that BENCHMARKS.md reports (benchmarks/prediction.py)."""

import numpy as np
import pandas as pd
import pytest
from paper_grid import paper_grid

from mimscale.analysis.predict import predict_metric, spanning_error, spanning_rows
from mimscale.analysis.results import clean_runs
from mimscale.study.spec import spanning_runs

METRIC = "eval_finetune_top1"


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
