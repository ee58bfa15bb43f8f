"""The downstream metric predicted from held-out loss: what the paper proposes the loss for (ranking runs
without fine-tuning them).

For each downstream metric, ordinary least squares on the runs that have it, from one of

    "val_loss"                      metric ~ a + b * val_loss
    "val_loss + log10(params)"      metric ~ a + b * val_loss + c * log10(params)

chosen by the smaller leave-one-out mean absolute error (model size helps where runs of different sizes
at the same loss reach different accuracies; the leave-one-out error, not the in-sample fit, says
whether it does). The leave-one-out residuals of OLS come from the hat matrix (e_i / (1 - h_ii)), exactly
what refitting without run i gives. A run without the metric gets a prediction from the fit on all runs
that have it, with an interval from the leave-one-out residual quantiles at the analysis's level; a run
with it gets its leave-one-out prediction (how far off the prediction would have been), so every row
of the table shows the same kind of number, and `predicted` says which rows have no measurement.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURES = {"val_loss": ("val_loss",), "val_loss + log10(params)": ("val_loss", "log10_params")}
# A fit with p coefficients needs at least p + 2 runs for leave-one-out residuals that are not all forced to
# fit exactly; 5 runs cover the larger feature set (3 coefficients).
MIN_RUNS = 5


def _design(runs: pd.DataFrame, features: tuple[str, ...]) -> np.ndarray:
    cols = {"val_loss": runs["val_loss"].to_numpy(float),
            "log10_params": np.log10(runs["params"].to_numpy(float))}
    return np.column_stack([np.ones(len(runs))] + [cols[f] for f in features])


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coefficients, leave-one-out residuals y_i - prediction without run i)."""
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    hat = np.einsum("ij,ji->i", x, np.linalg.pinv(x))  # diagonal of X (X^T X)^+ X^T
    with np.errstate(divide="ignore", invalid="ignore"):
        loo = (y - x @ coef) / (1 - hat)
    return coef, loo


def choose_fit(fit_runs: pd.DataFrame, metric: str) -> dict:
    """The feature set with the smaller leave-one-out MAE, its coefficients and LOO residuals."""
    y = fit_runs[metric].to_numpy(float)
    best, by = None, {}
    varies = fit_runs["params"].nunique() > 1
    for name, feats in FEATURES.items():
        if "log10_params" in feats and not varies:
            continue
        if len(y) < len(feats) + 3:
            continue
        x = _design(fit_runs, feats)
        coef, loo = _fit(x, y)
        if not np.all(np.isfinite(loo)):
            continue
        mae = float(np.mean(np.abs(loo)))
        by[name] = mae
        if best is None or mae < best["loo_mae"]:
            best = {"features": name, "coef": coef, "loo": loo, "loo_mae": mae}
    if best is not None:
        best["loo_mae_by_features"] = by
    return best


def predict_metric(runs: pd.DataFrame, metric: str, level: float = 0.95) -> tuple[dict, pd.DataFrame]:
    """(fit summary, one row per run) for one metric; the summary's `message` says why there is no fit."""
    has = runs[metric].notna()
    fit_runs = runs[has]
    summary = {"metric": metric, "n_fit": int(has.sum()), "n_predicted": 0, "features": None,
               "coefficients": None, "loo_mae": None, "loo_max_error": None, "loo_mae_by_features": None,
               "residual_interval": None, "ci_level": level, "message": None}
    best = choose_fit(fit_runs, metric) if len(fit_runs) >= MIN_RUNS else None
    if best is None:
        summary["message"] = (f"{int(has.sum())} run(s) with {metric}: too few to fit and check by leave-one-out "
                              f"(need {MIN_RUNS})")
        return summary, pd.DataFrame()
    lo_q, hi_q = np.quantile(best["loo"], [(1 - level) / 2, (1 + level) / 2])
    feats = FEATURES[best["features"]]
    pred = _design(runs, feats) @ best["coef"]
    pred[has.to_numpy()] = fit_runs[metric].to_numpy(float) - best["loo"]  # the leave-one-out prediction
    names = ["intercept", *feats]
    summary.update(features=best["features"], coefficients=dict(zip(names, best["coef"].tolist())),
                   loo_mae=best["loo_mae"], loo_max_error=float(np.max(np.abs(best["loo"]))),
                   loo_mae_by_features=best["loo_mae_by_features"], residual_interval=[float(lo_q), float(hi_q)],
                   n_predicted=int((~has).sum()))
    keep = [c for c in ("run", "model", "params", "dataset", "data_size", "iters", "seed", "val_loss")
            if c in runs.columns]
    rows = runs[keep].copy()
    rows["metric"] = metric
    rows["measured"] = runs[metric]
    rows["prediction"] = pred
    rows["prediction_lo"], rows["prediction_hi"] = pred + lo_q, pred + hi_q
    rows["predicted"] = ~has.to_numpy()
    rows["value"] = rows["measured"].where(has, rows["prediction"])
    return summary, rows


def prediction_section(runs: pd.DataFrame, metrics: list[str], level: float = 0.95) -> dict:
    """{"fits": [one summary per metric], "rows": [one row per run and metric]} (see predict_metric)."""
    fits, tables = [], []
    for m in metrics:
        summary, rows = predict_metric(runs, m, level)
        fits.append(summary)
        if not rows.empty:
            tables.append(rows)
    rows = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return {"fits": fits, "rows": rows.to_dict(orient="records")}


def split_error(runs: pd.DataFrame, metric: str, fraction: float = 0.25, seed: int = 0) -> dict:
    """Fit on a random `fraction` of the runs with the metric (features chosen by leave-one-out there),
    predict the rest: {n_fit, n_test, features, mae, max_error}."""
    have = runs[runs[metric].notna()]
    rng = np.random.default_rng(seed)
    n_fit = max(MIN_RUNS, int(round(fraction * len(have))))
    pick = np.zeros(len(have), bool)
    pick[rng.choice(len(have), n_fit, replace=False)] = True
    return _held_out_error(have, pick, metric)


GRID_AXES = ("model", "data_size", "iters", "seed")  # a results table's grid, for ``spanning_error``


def spanning_rows(runs: pd.DataFrame) -> np.ndarray:
    """Which rows of a results table a study's ``runs: spanning`` eval would have measured (``study.spec.
    spanning_runs`` on the table's grid: models by size, data sizes, lengths, seeds; every value of each at
    least once). A position the table lacks (an unbalanced grid) is simply not there."""
    from mimscale.study.spec import spanning_runs

    axes = [a for a in GRID_AXES if a in runs.columns]
    values = {a: sorted(runs[a].dropna().unique()) for a in axes}
    if "model" in values:  # models in order of size, as a study lists them
        size = runs.groupby("model")["params"].median()
        values["model"] = sorted(values["model"], key=lambda m: (size[m], m))
    shape = [len(values[a]) for a in axes]
    chosen = spanning_runs(shape)
    position = np.zeros(len(runs), dtype=np.int64)
    for a, n in zip(axes, shape):
        position = position * n + runs[a].map({v: i for i, v in enumerate(values[a])}).to_numpy(np.int64)
    return np.isin(position, sorted(chosen))


def spanning_error(runs: pd.DataFrame, metric: str) -> dict:
    """Fit on the ``spanning`` runs (about a quarter of a model x data x length grid), predict the others:
    {n_fit, n_test, features, mae, max_error} (the saving ``runs: spanning`` buys, and what it costs)."""
    have = runs[runs[metric].notna()]
    return _held_out_error(have, spanning_rows(have), metric)


def _held_out_error(have: pd.DataFrame, pick: np.ndarray, metric: str) -> dict:
    best = choose_fit(have[pick], metric)
    if best is None:
        return {"n_fit": int(pick.sum()), "n_test": int((~pick).sum()), "features": None, "mae": None,
                "max_error": None}
    test = have[~pick]
    err = test[metric].to_numpy(float) - _design(test, FEATURES[best["features"]]) @ best["coef"]
    return {"n_fit": int(pick.sum()), "n_test": int(len(test)), "features": best["features"],
            "mae": float(np.mean(np.abs(err))), "max_error": float(np.max(np.abs(err)))}
