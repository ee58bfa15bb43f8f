"""Known answers: correlations equal scipy's, planted power laws recovered, planted overfitting flagged."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from synth_results import LAW, MODELS, make_study_dir, planted_overfit_frame, power_law_frame

from mimscale.analysis import correlation as corr_mod
from mimscale.analysis import load_results
from mimscale.analysis import scaling as scaling_mod
from mimscale.analysis.correlation import correlate, correlation_table, selection_table
from mimscale.analysis.overfitting import overfitting_table
from mimscale.analysis.results import clean_runs
from mimscale.analysis.scaling import data_gain_table, fit_data_law, fit_joint_law, joint_fits, per_model_fits


def test_correlations_equal_scipy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=30)
    y = -0.7 * x + rng.normal(scale=0.5, size=30)
    y[3] = y[4]  # a tie, so Spearman/Kendall tie handling is exercised
    r = correlate(x, y, n_boot=500, seed=3)
    assert r["pearson"] == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert r["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert r["kendall"] == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert r["spearman_p"] == pytest.approx(stats.spearmanr(x, y).pvalue, rel=1e-9)
    for k in ("pearson", "spearman"):
        lo, hi = r[f"{k}_ci"]
        assert lo < r[k] < hi
    # Seeded: the same numbers give the same CIs.
    assert correlate(x, y, n_boot=500, seed=3)["pearson_ci"] == r["pearson_ci"]
    assert r["n_boot_valid"] == 500 and r["message"] is None


def test_bootstrap_ci_matches_a_direct_resample():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=12), rng.normal(size=12)
    r = correlate(x, y, n_boot=300, seed=7, level=0.9)
    idx = np.random.default_rng(7).integers(0, 12, size=(300, 12))
    direct = [stats.spearmanr(x[i], y[i]).statistic for i in idx if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0]
    assert r["spearman_ci"] == pytest.approx(list(np.percentile(direct, [5, 95])), abs=1e-12)


@pytest.mark.parametrize("x, y, msg", [([0.4, 0.5], [1, 2], "at least 3"),
                                       ([0.4, 0.4, 0.4], [1, 2, 3], "constant")])
def test_correlation_bad_input_gives_message(x, y, msg):
    r = correlate(x, y)
    assert msg in r["message"] and r["pearson"] is None


def test_correlation_table_groups():
    runs, _ = clean_runs(planted_overfit_frame())
    rows = correlation_table(runs, n_boot=100)
    assert {r["group"] for r in rows} == {"all", *MODELS}
    assert {r["metric"] for r in rows} == {"eval_linear_top1", "eval_knn_top1", "eval_recon_loss"}
    allrow = next(r for r in rows if r["group"] == "all" and r["metric"] == "eval_linear_top1")
    assert allrow["n"] == 24 and allrow["pearson"] < -0.95 and allrow["expected_sign"] == "negative"
    loss_row = next(r for r in rows if r["group"] == "all" and r["metric"] == "eval_recon_loss")
    assert loss_row["expected_sign"] == "positive" and loss_row["spearman"] > 0.9


def test_per_model_power_law_recovered():
    df = power_law_frame(noise=0.001, seed=0)
    runs, _ = clean_runs(df)
    fits = per_model_fits(runs, n_boot=50)
    assert len(fits) == 3
    for f in fits:
        e_true = LAW["E"] + LAW["A"] * f["params"] ** -LAW["alpha"]  # the model term is constant per model
        assert f["message"] is None
        assert f["beta"] == pytest.approx(LAW["beta"], abs=0.12)
        assert f["E"] == pytest.approx(e_true, abs=0.01)
        assert f["r2"] > 0.99 and f["dof"] == 3
        assert f["ci"]["beta"][0] < f["beta"] < f["ci"]["beta"][1]
        assert abs(f["holdout"]["error"]) < 0.01 and f["holdout"]["held_out_size"] == 3e5


def test_joint_power_law_recovered():
    models = {"a": 1e5, "b": 4e5, "c": 1.6e6, "d": 6.4e6}
    df = power_law_frame(models=models, noise=0.001, seed=4)
    runs, _ = clean_runs(df)
    (f,) = joint_fits(runs, n_boot=30)
    assert f["message"] is None and f["loss"] == "huber" and all(f["identified"].values())
    assert f["alpha"] == pytest.approx(LAW["alpha"], abs=0.1)
    assert f["beta"] == pytest.approx(LAW["beta"], abs=0.1)
    assert f["E"] == pytest.approx(LAW["E"], abs=0.02)
    assert f["r2"] > 0.99
    assert f["holdout"]["mean_abs_error"] < 0.01 and f["holdout"]["n_held_out"] == 4
    assert f["n_boot_valid"] >= 10 and f["ci"]["beta"][0] <= f["beta"] <= f["ci"]["beta"][1]


def test_fits_with_too_little_data_give_messages():
    f = fit_data_law([100, 100, 200], [0.5, 0.51, 0.45])
    assert "needs at least 3 sizes" in f["message"] and f["beta"] is None
    three = fit_data_law([100, 200, 400], [0.6, 0.5, 0.45], n_boot=10)
    assert three["message"] is None and "passes through every point" in three["note"]
    assert "no extrapolation" in three["holdout"]["message"]
    j = fit_joint_law([1, 2, 1, 2], [10, 10, 20, 20], [0.5, 0.4, 0.45, 0.35])
    assert "needs at least 3" in j["message"]


def test_non_converging_fit_gives_message(monkeypatch):
    def fail(theta0, *a, **k):
        return np.full_like(theta0, np.nan), np.full(len(theta0), np.nan)

    monkeypatch.setattr(scaling_mod.F, "refine", fail)
    f = fit_data_law([100, 200, 400, 800], [0.6, 0.5, 0.45, 0.43])
    assert "did not converge" in f["message"] and f["beta"] is None


def test_planted_overfitting_flagged_and_no_others():
    planted = {("tiny-l", 100, 2000), ("tiny-m", 100, 2000), ("tiny-l", 200, 2000)}
    runs, _ = clean_runs(planted_overfit_frame(planted=tuple(planted), rise=0.02))
    table = overfitting_table(runs, tolerance=0.005)
    flagged = {(r.model, int(r.data_size), int(r.iters)) for r in table.itertuples() if r.flag}
    assert flagged == planted
    row = table[(table["model"] == "tiny-l") & (table["data_size"] == 100) & (table["iters"] == 2000)].iloc[0]
    assert row["rise_vs_shorter"] == pytest.approx(0.02) and "500 it" in row["reason"]
    # A tolerance above the planted rise flags nothing.
    assert not overfitting_table(runs, tolerance=0.03)["flag"].any()


def test_planted_curve_overfitting_in_a_study(tmp_path):
    planted = {("tiny-l", 100, 2000), ("tiny-s", 500, 500)}
    study = make_study_dir(tmp_path / "s", planted_curve=tuple(planted), rise=0.02)
    raw, curves = load_results(study)
    runs, _ = clean_runs(raw)
    table = overfitting_table(runs, curves, tolerance=0.005)
    flagged = {(r.model, int(r.data_size), int(r.iters)) for r in table.itertuples() if r.flag}
    assert flagged == planted
    row = table[table["flag"] & (table["model"] == "tiny-l")].iloc[0]
    assert row["curve_rise"] == pytest.approx(0.02, abs=0.002) and row["curve_min_step"] < row["curve_final_step"]
    assert "held-out curve bottoms" in row["reason"]
    assert (table["gap"] > 0).all()  # the train-probe loss was logged for every run


def test_seeds_are_averaged_per_setting():
    df = planted_overfit_frame(planted=())
    twin = df.copy()
    twin["val_loss"] += 0.002
    runs, _ = clean_runs(pd.concat([df, twin], ignore_index=True))
    table = overfitting_table(runs)
    assert len(table) == len(df) and (table["n_runs"] == 2).all() and not table["flag"].any()


def test_data_gain():
    runs, _ = clean_runs(planted_overfit_frame(planted=()))
    g = data_gain_table(runs)
    assert len(g) == 6
    row = g[(g["model"] == "tiny-s") & (g["iters"] == 500)].iloc[0]
    sub = runs[(runs["model"] == "tiny-s") & (runs["iters"] == 500)].set_index("data_size")["val_loss"]
    assert row["gain"] == pytest.approx(sub[100] - sub[1000])
    assert row["last_gain"] == pytest.approx(sub[500] - sub[1000]) and row["still_gains"]


def test_selection_reports_the_metric_lost():
    runs, _ = clean_runs(planted_overfit_frame(planted=()))
    best = runs["val_loss"].idxmin()
    runs.loc[best, "eval_knn_top1"] = runs["eval_knn_top1"].min() - 0.1  # the val-loss pick is worst here
    rows = {(r["group"], r["metric"]): r for r in selection_table(runs)}
    assert rows[("all", "eval_linear_top1")]["same"] is True
    knn = rows[("all", "eval_knn_top1")]
    assert knn["same"] is False
    assert knn["metric_lost"] == pytest.approx(runs["eval_knn_top1"].max() - runs.loc[best, "eval_knn_top1"])
    assert knn["by_val_loss"]["run"] == runs.loc[best, "run"]
    assert ("iters=500", "eval_knn_top1") in rows


def test_model_order_by_params():
    runs, _ = clean_runs(planted_overfit_frame())
    assert corr_mod.model_order(runs) == ["tiny-s", "tiny-m", "tiny-l"]
