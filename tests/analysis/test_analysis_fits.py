"""Scaling fits: log-space Huber fits equal a reference optimiser's, are robust, fast, and say when a
parameter is not identified (never printing a bound or a range-wide CI as a result)."""

import time

import numpy as np
import pytest
from paper_grid import paper_grid
from scipy import optimize
from synth_results import LAW, power_law_frame

from mimscale.analysis import fitting as F
from mimscale.analysis.results import clean_runs
from mimscale.analysis.scaling import fit_data_law, fit_joint_law, per_model_fits
from mimscale.analysis.summary import fits as fits_summary

STEP = ([1e3, 2e3, 4e3, 8e3], [0.8, 0.45, 0.45, 0.45])  # all of the gain in the first step: beta runs to its bound


def _reference(x, y):
    """scipy's least_squares on the same objective from the same starts (slow, for comparison)."""
    lo, hi = F.bounds(x.shape[1])

    def res(t):
        return np.log(np.maximum(F.predict(t[None], x)[0], 1e-300)) - np.log(y)

    best = np.inf
    for s in F.starts(x, y):
        r = optimize.least_squares(res, np.clip(s, lo, hi), bounds=(lo, hi), loss="huber", f_scale=F.HUBER_DELTA,
                                   max_nfev=5000, x_scale="jac")
        best = min(best, float(np.sum(F._huber(res(r.x), F.HUBER_DELTA))))
    return best


@pytest.mark.parametrize("joint", [False, True])
def test_fit_reaches_the_reference_optimum(joint):
    df = paper_grid(noise=0.0003)
    df = df[(df["dataset"] == "in1k") & (df["iters"] == 250_000)]
    if joint:
        x = np.stack([df["params"] / df["params"].max(), df["data_size"] / df["data_size"].max()], axis=1)
        y = df["val_loss"].to_numpy()
    else:
        sub = df[df["model"] == "swinv2-L"]
        x, y = (sub["data_size"] / sub["data_size"].max()).to_numpy()[:, None], sub["val_loss"].to_numpy()
    _, obj = F.fit(x, y)
    assert obj <= _reference(x, y) * (1 + 1e-6) + 1e-12


def test_huber_fit_is_robust_to_an_outlier_run():
    d = np.array([1e3, 3e3, 1e4, 3e4, 1e5, 3e5])
    y = 0.33 + 2 * d**-0.5 + np.random.default_rng(0).normal(0, 0.0005, len(d))
    y[2] += 0.05  # one broken run, 10% off
    f = fit_data_law(d, y, n_boot=20)
    assert f["estimate"]["beta"] == pytest.approx(0.5, abs=0.05)
    assert f["estimate"]["E"] == pytest.approx(0.33, abs=0.01)


def test_identified_on_a_clean_law():
    runs, _ = clean_runs(power_law_frame(noise=0.001, seed=0))
    for f in per_model_fits(runs, n_boot=50):
        assert all(f["identified"].values()) and f["identification"] is None
        assert f["beta"] == f["estimate"]["beta"]


def test_a_bound_is_not_a_result():
    f = fit_data_law(*STEP, n_boot=100)
    assert f["message"] is None and f["estimate"]["beta"] == pytest.approx(F.EXP_MAX)
    assert f["beta"] is None and f["B"] is None and f["identified"] == {"E": True, "B": False, "beta": False}
    assert "beta at its bound 5" in f["identification"]
    # Regression: the summary printed "beta 10.00 (CI 10.00 to 10.00)".
    res = {"primary_dataset": "d", "fits": {"per_model": [{"model": "m", "series": "d", "iters": 100.0, **f}],
                                           "joint": []}}
    text = " ".join(fits_summary(res))
    assert "m beta not identified" in text and "5.00" not in text and "beta at its bound 5" in text


def test_a_ci_spanning_the_range_is_not_a_result():
    d = np.repeat([1e3, 3e3, 1e4, 3e4, 1e5, 3e5], 1)
    y = 0.33 + 2 * d**-0.5 + np.random.default_rng(0).normal(0, 0.01, len(d))  # noise as large as the signal
    f = fit_data_law(d, y, n_boot=200)
    assert f["E"] is None and "E its CI spans over half the range" in f["identification"]


def test_an_exponent_that_can_be_zero_confounds_the_constant():
    rng = np.random.default_rng(3)
    n = np.repeat([1e6, 4e6, 1.6e7], 4)
    d = np.tile([1e3, 1e4, 1e5, 1e6], 3)
    y = 0.4 + 2 * d**-0.5 + rng.normal(0, 0.002, len(d))  # no model-size term at all
    f = fit_joint_law(n, d, y, n_boot=100)
    assert f["identified"]["beta"] and not f["identified"]["A"] and not f["identified"]["alpha"]
    assert f["alpha"] is None and f["beta"] == pytest.approx(0.5, abs=0.15)


def test_fits_are_fast():
    # Regression: one bootstrap of the old per-model fit was 200 least-squares calls of up to 0.17 s.
    rng = np.random.default_rng(0)
    d = np.repeat([1e5, 2e5, 5e5, 1e6, 1.4e7], 2)
    y = 0.4 + 0.05 * (d / 1e6) ** -0.5 + rng.normal(0, 0.0005, len(d))
    fit_data_law(d, y, n_boot=20)  # warm-up
    t0 = time.perf_counter()
    fit_data_law(d, y, n_boot=200)
    per_model = time.perf_counter() - t0
    runs = paper_grid(noise=0.0003)
    sub = runs[(runs["dataset"] == "in1k") & (runs["iters"] == 500_000)]
    t0 = time.perf_counter()
    fit_joint_law(sub["params"], sub["data_size"], sub["val_loss"], n_boot=200)
    joint = time.perf_counter() - t0
    assert per_model < 1.0 and joint < 2.0, (per_model, joint)  # measured: ~0.02 s and ~0.1 s


def test_joint_recovers_the_law_with_identified_parameters():
    models = {"a": 1e5, "b": 4e5, "c": 1.6e6, "d": 6.4e6}
    runs, _ = clean_runs(power_law_frame(models=models, noise=0.001, seed=4))
    f = fit_joint_law(runs["params"], runs["data_size"], runs["val_loss"], n_boot=100)
    assert all(f["identified"].values())
    assert f["alpha"] == pytest.approx(LAW["alpha"], abs=0.1) and f["beta"] == pytest.approx(LAW["beta"], abs=0.1)
    assert f["ci"]["alpha"][0] <= f["alpha"] <= f["ci"]["alpha"][1]
