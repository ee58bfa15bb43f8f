"""Downstream metric predicted from held-out loss: leave-one-out error, feature choice, predicted rows
marked, intervals, too few runs; identical metric columns shown once; no 'nan' in the findings' prose."""

import numpy as np
import pandas as pd
import pytest
from paper_grid import paper_grid

from mimscale.analysis import analyze
from mimscale.analysis.findings import overfitting_finding
from mimscale.analysis.predict import FEATURES, predict_metric, split_error
from mimscale.analysis.results import clean_runs, identical_metrics

METRIC = "eval_finetune_top1"
FAST = {"n_boot": 100, "fit_boot": 10}


def _grid(**kw):
    # top-1 noise 0.004 (0.4 points), like the published grid's scatter about its loss trend
    runs, _ = clean_runs(paper_grid(top1_noise=0.004, **kw))
    return runs


def test_loo_error_matches_refitting_without_each_run():
    runs = _grid()
    summary, rows = predict_metric(runs, METRIC)
    feats = FEATURES[summary["features"]]
    x = np.column_stack([np.ones(len(runs))] + [runs["val_loss"] if f == "val_loss" else np.log10(runs["params"])
                                                 for f in feats])
    y = runs[METRIC].to_numpy()
    errs = []
    for i in range(len(runs)):
        keep = np.arange(len(runs)) != i
        coef, *_ = np.linalg.lstsq(x[keep], y[keep], rcond=None)
        errs.append(y[i] - x[i] @ coef)
    assert summary["loo_mae"] == pytest.approx(np.mean(np.abs(errs)), rel=1e-9)
    assert np.allclose(rows["measured"] - rows["prediction"], errs)
    assert summary["loo_mae"] == min(summary["loo_mae_by_features"].values())
    assert not rows["predicted"].any() and summary["n_predicted"] == 0


def test_model_size_is_used_where_it_helps_and_the_error_is_near_the_noise():
    summary, _ = predict_metric(_grid(), METRIC)
    # top-1 also rises with model size at a fixed loss: the size term lowers the leave-one-out error
    assert summary["features"] == "val_loss + log10(params)"
    by = summary["loo_mae_by_features"]
    assert by["val_loss + log10(params)"] < by["val_loss"]
    assert 0.002 < summary["loo_mae"] < 0.005  # noise SD 0.004: mean |error| ~ 0.8 x 0.004
    # a top-1 that depends on the loss alone: the size term does not help, the loss alone is chosen
    runs = _grid()
    rng = np.random.default_rng(3)
    runs[METRIC] = 0.95 - 0.6 * runs["val_loss"] + rng.normal(0, 0.004, len(runs))
    assert predict_metric(runs, METRIC)[0]["features"] == "val_loss"


def test_fit_on_a_quarter_predicts_the_rest():
    err = split_error(_grid(), METRIC, fraction=0.25, seed=0)
    assert (err["n_fit"], err["n_test"]) == (16, 47)
    assert err["mae"] < 0.006


def test_runs_without_the_metric_are_predicted_and_marked(tmp_path):
    df = paper_grid(top1_noise=0.004)
    truth = df[METRIC].copy()
    hide = np.random.default_rng(0).random(len(df)) < 0.75
    df.loc[hide, METRIC] = np.nan
    df.to_csv(tmp_path / "r.csv", index=False)
    res = analyze(tmp_path / "r.csv", out_dir=tmp_path / "o", **FAST)
    fit = res["prediction"]["fits"][0]
    assert fit["n_fit"] == int((~hide).sum()) and fit["n_predicted"] == int(hide.sum())
    table = pd.read_csv(res["tables"]["predictions"])
    assert len(table) == 63 and table["predicted"].sum() == hide.sum()
    pred = table[table["predicted"]]
    assert pred["measured"].isna().all() and (pred["value"] == pred["prediction"]).all()
    assert (pred["prediction_lo"] < pred["prediction"]).all() and (pred["prediction"] < pred["prediction_hi"]).all()
    measured = table[~table["predicted"]]
    assert (measured["value"] == measured["measured"]).all()
    # the predictions are close to the hidden truth, and the 95% interval covers most of it
    t = truth[hide].to_numpy()
    assert np.mean(np.abs(pred["prediction"].to_numpy() - t)) < 0.006
    inside = (pred["prediction_lo"].to_numpy() <= t) & (t <= pred["prediction_hi"].to_numpy())
    assert inside.mean() > 0.8
    assert pd.read_csv(res["tables"]["prediction_fits"])["loo_mae"].iloc[0] == pytest.approx(fit["loo_mae"])
    text = " ".join(res["summary"])
    assert f"predicted for {int(hide.sum())} run(s) without it" in text and "leave-one-out mean absolute error" in text


def test_too_few_runs_say_why(tmp_path):
    df = paper_grid()
    df.loc[4:, METRIC] = np.nan
    df.to_csv(tmp_path / "r.csv", index=False)
    res = analyze(tmp_path / "r.csv", write=False, **FAST)
    fit = res["prediction"]["fits"][0]
    assert fit["loo_mae"] is None and "too few" in fit["message"] and res["prediction"]["rows"] == []
    assert any("Predicting eval_finetune_top1 from held-out loss: 4 run(s)" in s for s in res["summary"])


def test_identical_metrics_are_shown_once(tmp_path):
    df = paper_grid()
    df["eval_finetune_final_top1"] = df[METRIC]
    df["eval_linear_top1"] = df[METRIC] - 0.1
    runs, _ = clean_runs(df)
    assert identical_metrics(runs, [METRIC, "eval_finetune_final_top1", "eval_linear_top1"]) == \
        {METRIC: ["eval_finetune_final_top1"]}
    # only columns of one evaluation are merged; the headline's name is kept
    df2 = df.assign(eval_linear_top1=df[METRIC])
    runs2, _ = clean_runs(df2)
    assert identical_metrics(runs2, ["eval_finetune_final_top1", METRIC, "eval_linear_top1"], [METRIC]) == \
        {METRIC: ["eval_finetune_final_top1"]}
    df.to_csv(tmp_path / "r.csv", index=False)
    res = analyze(tmp_path / "r.csv", write=False, **FAST)
    text = "\n".join(res["summary"])
    assert text.count("Validation loss vs eval_finetune_final_top1") == 0
    assert "Validation loss vs eval_finetune_top1 (= eval_finetune_final_top1, the same on every run)" in text
    f = next(f for f in res["paper_findings"] if f["finding"].startswith("validation loss"))
    assert "eval_finetune_final_top1" not in f["numbers"] and "eval_finetune_final_top1" not in f["other_metrics"]
    assert "(= eval_finetune_final_top1, the same on every run)" in f["text"]
    assert [p["metric"] for p in res["prediction"]["fits"]] == [METRIC, "eval_linear_top1"]


def test_a_curve_with_too_few_points_is_not_printed_as_nan():
    runs = pd.DataFrame([{"run": f"{m}-{d}", "model": m, "params": p, "data_size": d, "iters": 1000,
                          "val_loss": 0.5, "train_probe_loss": 0.4} for m, p in (("s", 1e6), ("l", 1e7))
                         for d in (100, 1000)])
    curves = pd.DataFrame([{"run": r, "step": 1000, "split": s, "name": "loss", "value": 0.5}
                           for r in runs["run"] for s in ("val", "train_probe")])
    f = overfitting_finding(runs, curves, ["s", "l"], 0.001)
    assert "nan" not in f["text"] and "too few points" in f["text"]
