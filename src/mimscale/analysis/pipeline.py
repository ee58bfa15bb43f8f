"""Analysis of a data-scaling study: overfitting, data-scaling fits, val-loss vs downstream correlation.

Reads run directories and result tables only (never model or training code).

    analyze(input_path, out_dir=None, ...) -> dict     the JSON document of `mimscale analyze --json`
    load_results(input_path) -> (runs_df, curves_df)    raw results table and long-format curves
    results_table(study_dir) -> DataFrame               one row per run (what results.csv holds)

The JSON document (NaN is written as null; every list item that could not be computed has a
non-null `message` saying why):

    input, kind ("study" | "csv"), n_runs, n_settings, models [{name, params}], data_sizes, iters,
    metrics [eval_* names], headline_metrics [the eval_* names that decide the correlation finding:
    --headline, else a study's fine-tuning top-1; empty: every top-1 / mIoU column],
    datasets [{name, n_runs, sizes, series, role}], primary_dataset      see datasets.py
    config {tolerance, tolerance_basis, tolerance_source ("seeds" | "loss scale" | "user"), seed,
            n_boot, fit_boot, ci_level, ci_method, primary_dataset, primary_dataset_basis,
            same_distribution, fit_loss}
    messages [str]                        problems with the input (dropped rows, skipped runs, ...)
    correlation [{group ("all" | model), metric, expected_sign, n, pearson, pearson_p, spearman,
                  spearman_p, kendall, kendall_p, pearson_ci [lo, hi], spearman_ci, ci_level, n_boot,
                  n_boot_valid, message}]
    overfitting [{model, params, dataset, series, data_size, iters, n_runs, val_loss, val_loss_sd,
                  train_probe_loss, gap, shorter_iters, rise_vs_shorter, curve_min, curve_min_step,
                  curve_final_step, curve_rise, flag, reason}]                 one row per setting
    rises [{model, dataset, data_size, iters, shorter_iters, rise_vs_shorter, flag}]   every rise > 0
    fits {per_model: [{model, params, series, iters, n_points, n_sizes, dof, E, B, beta, r2,
                       ci {E, B, beta: [lo, hi]}, ci_level, n_boot, n_boot_valid,
                       estimate {E, B, beta}, identified {E, B, beta: bool}, identification,
                       holdout {held_out_size, predicted, observed, error, rel_error, message},
                       note, message}],
          joint: [{series, iters, n_points, n_models, n_sizes, E, A, alpha, B, beta, r2, ci {...},
                   ci_level, n_boot, n_boot_valid, loss ("huber"), f_scale (its delta on log-loss),
                   estimate {...}, identified {...}, identification,
                   holdout {held_out_size, n_held_out, mean_abs_error, max_abs_error,
                            mean_rel_error, message}, message}]}
          A parameter the data do not identify (at a bound; CI reaching a bound or spanning half the
          exponent range) is null, with the optimiser's number under `estimate` and the reason in
          `identification`.
    data_gain [{model, params, series, iters, n_sizes, shared_sizes, d_min, d_max, loss_at_d_min,
                loss_at_d_max, gain, rel_gain, last_gain, still_gains, own_d_min, own_d_max, own_gain,
                message}]             gain over the sizes every compared model has (scaling.py)
    selection [{group ("all" | "iters=<n>"), metric, n, same, metric_lost,
                by_val_loss {run, model, data_size, iters, val_loss, value}, by_metric {...}, message}]
    identical_metrics {metric: [the other eval_* columns equal to it on every run]}
    prediction {fits: [{metric, n_fit, n_predicted, features, coefficients, loo_mae, loo_max_error,
                        loo_mae_by_features, residual_interval, ci_level, message}],
                rows: [{run, model, params, dataset, data_size, iters, seed, val_loss, metric, measured,
                        prediction, prediction_lo, prediction_hi, predicted, value}]}     see predict.py
    paper_findings [{finding, verdict, text, numbers, ...}]                  see findings.py
    summary [str]                         the plain-words findings
    tables {name: path}                   the CSV files written (absent with write=False)
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..rundir import atomic_write_text
from .correlation import correlation_table, model_order, selection_table
from .datasets import assign_series
from .findings import paper_findings
from .overfitting import overfitting_table, rises, tolerance_for
from .predict import prediction_section
from .results import (
    ResultsError,
    clean_runs,
    eval_columns,
    finetune_metrics,
    identical_metrics,
    is_study_dir,
    load_results,
    results_table,
    settings_table,
)
from .scaling import data_gain_table, joint_fits, per_model_fits
from .summary import summarize

__all__ = ["ResultsError", "analyze", "analyze_frames", "default_out", "flatten_rows", "jsonable",
           "load_results", "results_table", "write_tables"]


def default_out(input_path, name: str) -> Path:
    """STUDY_DIR/<name> for a study directory, else <csv stem>_<name> beside the CSV."""
    p = Path(input_path)
    if is_study_dir(p) or p.is_dir():
        return p / name
    return p.with_name(f"{p.stem}_{name}")


def jsonable(obj):
    """Plain JSON types: numpy scalars to Python, NaN/inf to None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if obj is pd.NA or obj is pd.NaT:
        return None
    return obj


def _records(df: pd.DataFrame) -> list[dict]:
    return jsonable(df.to_dict(orient="records"))


def _section(name: str, messages: list[str], fn, *args, **kw):
    """Run one analysis section; a failure becomes a message for that section, not a crash."""
    try:
        return fn(*args, **kw)
    except Exception as exc:  # noqa: BLE001 - any failure of one section must leave the others
        messages.append(f"{name}: failed ({type(exc).__name__}: {exc})")
        return None


def analyze(input_path, out_dir=None, *, tolerance: float | None = None, seed: int = 0,
            n_boot: int = 2000, fit_boot: int = 200, level: float = 0.95, write: bool = True,
            primary_dataset: str | None = None, same_distribution: bool = False,
            headline: list[str] | None = None) -> dict:
    """Analyse a study directory or results CSV; write CSV tables to out_dir (default: see default_out).

    Raises ResultsError when nothing can be analysed (unreadable input, missing required columns, no
    usable run). Problems with single items are reported in the result's `messages` and in the
    item's own `message` field. tolerance None: from the replicate seeds or the loss scale
    (overfitting.tolerance_for); primary_dataset None: the dataset with the most runs (datasets.py).
    """
    return analyze_frames(input_path, out_dir, tolerance=tolerance, seed=seed, n_boot=n_boot,
                          fit_boot=fit_boot, level=level, write=write, primary_dataset=primary_dataset,
                          same_distribution=same_distribution, headline=headline)[0]


def analyze_frames(input_path, out_dir=None, *, tolerance: float | None = None, seed: int = 0,
                   n_boot: int = 2000, fit_boot: int = 200, level: float = 0.95, write: bool = True,
                   primary_dataset: str | None = None,
                   same_distribution: bool = False,
                   headline: list[str] | None = None) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """`analyze`, also returning the cleaned runs table and the curves (for figures)."""
    raw, curves = load_results(input_path)
    runs, messages = clean_runs(raw)
    runs, data_info = assign_series(runs, primary_dataset, same_distribution)
    tolerance, tol_basis, tol_source = tolerance_for(runs, tolerance)
    metrics = eval_columns(runs)
    for m in list(metrics):
        if runs[m].notna().sum() == 0:
            messages.append(f"{m}: no numeric values; left out")
            metrics.remove(m)
    unknown = [m for m in headline or [] if m not in metrics]
    if unknown:
        raise ResultsError(f"--headline {unknown[0]}: not a metric of this input; metrics: "
                           f"{', '.join(metrics) or 'none'}")
    headline = list(headline or []) or finetune_metrics(input_path, metrics)
    kind = "study" if is_study_dir(Path(input_path)) else "csv"
    if kind == "csv":
        messages.append("CSV input: no validation curves, so only the length rule can flag overfitting")
    elif curves.empty:
        messages.append("no metrics.jsonl curves found: only the length rule can flag overfitting")
    order = model_order(runs)
    params = runs.groupby("model")["params"].median()
    res: dict = {
        "input": str(input_path), "kind": kind, "n_runs": int(len(runs)),
        "n_settings": int(len(settings_table(runs))),
        "models": [{"name": m, "params": float(params[m])} for m in order],
        "data_sizes": sorted(float(v) for v in runs["data_size"].unique()),
        "iters": sorted(float(v) for v in runs["iters"].unique()), "metrics": metrics,
        "headline_metrics": headline,
        "datasets": data_info["datasets"], "primary_dataset": data_info["primary"],
        "config": {"tolerance": tolerance, "tolerance_basis": tol_basis, "tolerance_source": tol_source,
                   "seed": seed, "n_boot": n_boot, "fit_boot": fit_boot, "ci_level": level,
                   "ci_method": "seeded percentile bootstrap over runs", "primary_dataset": data_info["primary"],
                   "primary_dataset_basis": data_info["primary_basis"],
                   "same_distribution": data_info["same_distribution"],
                   "fit_loss": "Huber (delta 1e-3) on log-loss, from a grid of starts"},
        "messages": messages,
    }
    boot = {"level": level, "seed": seed}
    over = _section("overfitting", messages, overfitting_table, runs, curves, tolerance)
    gain = _section("data_gain", messages, data_gain_table, runs, tolerance)
    res["correlation"] = _section("correlation", messages, correlation_table, runs, metrics,
                                  n_boot=n_boot, **boot) or []
    res["overfitting"] = _records(over) if over is not None else []
    res["rises"] = rises(res["overfitting"])
    prim = {"primary": data_info["primary"], "n_boot": fit_boot, **boot}
    res["fits"] = {"per_model": _section("fits.per_model", messages, per_model_fits, runs, **prim) or [],
                   "joint": _section("fits.joint", messages, joint_fits, runs, **prim) or []}
    res["data_gain"] = _records(gain) if gain is not None else []
    res["selection"] = _section("selection", messages, selection_table, runs, metrics) or []
    res["identical_metrics"] = identical_metrics(runs, metrics, headline)
    res["prediction"] = _section("prediction", messages, prediction_section, runs,
                                 [m for m in metrics if m not in sum(res["identical_metrics"].values(), [])],
                                 level) or {"fits": [], "rows": []}
    if not metrics:
        messages.append("no eval_* columns: no correlation or selection analysis")
    res = jsonable(res)
    res["paper_findings"] = jsonable(_section("paper_findings", messages, paper_findings, res, runs, curves) or [])
    res["summary"] = summarize(res)
    if write:
        out = Path(out_dir) if out_dir is not None else default_out(input_path, "analysis")
        res["tables"] = write_tables(res, runs, out)
    return res, runs, curves


_NESTED = ("ci", "holdout", "by_val_loss", "by_metric")


def flatten_rows(rows: list[dict]) -> pd.DataFrame:
    """Nested dicts (CIs, holdout, picks) as dotted columns and [lo, hi] pairs as _lo/_hi for CSV."""
    flat = []
    for r in rows:
        f = {}
        for k, v in r.items():
            if k.endswith("_ci"):
                f[f"{k}_lo"], f[f"{k}_hi"] = v if v else (None, None)
            elif k in _NESTED or isinstance(v, dict):
                for k2, v2 in (v or {}).items():
                    if isinstance(v2, list):
                        f[f"{k}.{k2}_lo"], f[f"{k}.{k2}_hi"] = v2
                    else:
                        f[f"{k}.{k2}"] = v2
            else:
                f[k] = v
        flat.append(f)
    return pd.DataFrame(flat)


def write_tables(res: dict, runs: pd.DataFrame, out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    tables = {"results": runs, "correlation": flatten_rows(res["correlation"]),
              "overfitting": pd.DataFrame(res["overfitting"]),
              "fits_per_model": flatten_rows(res["fits"]["per_model"]),
              "fits_joint": flatten_rows(res["fits"]["joint"]), "data_gain": pd.DataFrame(res["data_gain"]),
              "selection": flatten_rows(res["selection"]),
              "prediction_fits": flatten_rows(res["prediction"]["fits"]),
              "predictions": pd.DataFrame(res["prediction"]["rows"])}
    paths = {}
    for name, df in tables.items():
        path = out / f"{name}.csv"
        atomic_write_text(path, df.to_csv(index=False))
        paths[name] = str(path)
    atomic_write_text(out / "summary.txt", "\n".join(res["summary"]) + "\n")
    paths["summary"] = str(out / "summary.txt")
    return paths
