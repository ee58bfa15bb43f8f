"""The study report: `build_report(input_path, out_dir)` writes

    out_dir/report.html      self-contained (inline CSS, base64 images, no scripts, no network)
    out_dir/figures/*.png    the figures (also .svg / .pdf with formats=("png", "svg", "pdf"))
    out_dir/tables/*.csv     the analysis tables (as `mimscale analyze` writes them) + analysis.json
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from ..analysis.correlation import model_order
from ..analysis.pipeline import analyze_frames, default_out, flatten_rows
from ..analysis.results import EVAL_DATA_SUFFIX, eval_data_columns, is_study_dir
from ..rundir import RunDir, atomic_write_text
from . import figures as F
from . import html as H
from .labels import aliases_of, named_once

__all__ = ["build_report"]


def _figures(res: dict, runs: pd.DataFrame, curves: pd.DataFrame, fig_dir: Path, fig_out: F.Output,
             same: dict[str, list[str]]) -> list[dict]:
    """same: metric -> the metrics with identical numbers; each group is drawn once."""
    tol = res["config"]["tolerance"]
    metrics = list(same) if same else res["metrics"]
    over = pd.DataFrame(res["overfitting"])
    specs = [
        ("Validation-loss curves", "loss_curves", "Loss curves per run",
         "Held-out loss (solid) and the same loss on a fixed probe of the training subset (dashed) "
         "against the step, coloured by data size. A held-out curve that turns up while the dashed one "
         "keeps falling is overfitting.", lambda p: F.loss_curves(curves, runs, p, out=fig_out)),
        ("Held-out loss vs data size", "loss_vs_data", "Final held-out loss vs data size",
         "One panel per training length, a line per model along the primary dataset (seed means; faint dots are "
         "single runs; open markers: other datasets, each its own series unless --same-distribution). "
         "Dashed: the per-model fit L(D) = E + B*D^-beta (drawn also where a parameter is not identified).",
         lambda p: F.loss_vs_data(runs, res["fits"]["per_model"], p, res.get("primary_dataset"), out=fig_out)),
        ("Downstream metrics vs data size", "metric_vs_data", "Downstream metrics vs data size",
         "Each downstream metric against the number of pre-training images, per model and length "
         "(accuracies in %; a metric with the same numbers as another is drawn once and names both).",
         lambda p: F.metric_vs_data(runs, metrics, p, res.get("primary_dataset"), aliases=same, out=fig_out)),
        ("Validation loss vs downstream metrics", "loss_vs_metric", "Held-out loss vs downstream metrics",
         "Each point is a run (colour: model, marker: length); titles give the correlations over all runs. "
         "The table gives them per model with bootstrap CIs.",
         lambda p: F.loss_vs_metric(runs, metrics, res["correlation"], p, aliases=same, out=fig_out)),
        ("The grid and overfitting", "grid_heatmap", "The grid",
         f"Final held-out loss (top) and train/val gap (bottom, where logged) per model and data size; red "
         f"outlines mark settings flagged as overfitting (rise > {tol:.2g}).",
         lambda p: F.grid_heatmap(over, runs, p, out=fig_out)),
    ]
    out = []
    for section, name, title, caption, draw in specs:
        try:
            path = draw(fig_dir / f"{name}.png")
        except Exception as exc:  # noqa: BLE001 - one broken figure must not lose the report
            res["messages"].append(f"figure {name}: failed ({type(exc).__name__}: {exc})")
            continue
        if path is not None:
            out.append({"section": section, "title": title, "caption": caption, "path": path})
    return out


def _not_identified(df: pd.DataFrame, params) -> pd.DataFrame:
    """Show 'not identified' instead of a number (and its CI) where the data do not identify a parameter."""
    df = df.copy()
    for p in params:
        col = f"identified.{p}"
        if col not in df.columns:
            continue
        mask = df[col].eq(False)
        for c in (p, f"ci.{p}_lo", f"ci.{p}_hi"):
            if c in df.columns:
                df[c] = df[c].astype(object).where(~mask, "not identified" if c == p else None)
    return df


def _once(rows: list[dict], same: dict[str, list[str]]) -> list[dict]:
    """Rows of a per-metric table with each group of identical metrics once, named by all its names."""
    dropped = aliases_of(same)
    return [{**r, "metric": named_once(same, r["metric"])} for r in rows if r.get("metric") not in dropped]


def _tables(res: dict, same: dict[str, list[str]]) -> dict[str, str]:
    corr = flatten_rows(_once(res["correlation"], same))
    per = _not_identified(flatten_rows(res["fits"]["per_model"]), ("E", "B", "beta"))
    joint = _not_identified(flatten_rows(res["fits"]["joint"]), ("E", "A", "alpha", "B", "beta"))
    gain = pd.DataFrame(res["data_gain"])
    if "shared_sizes" in gain.columns:
        gain["shared_sizes"] = gain["shared_sizes"].map(lambda v: ", ".join(f"{x:,.0f}" for x in v or []))
    sel = flatten_rows(_once(res["selection"], same))
    return {
        "Validation loss vs downstream metrics": H.table(corr, [
            "group", "metric", "n", "pearson", "pearson_ci_lo", "pearson_ci_hi", "spearman", "spearman_ci_lo",
            "spearman_ci_hi", "kendall", "expected_sign", "message"], name="Correlation table"),
        "The grid and overfitting": f"<h3>Overfitting table</h3><p>Tolerance {res['config']['tolerance']:.2g}: "
        f"{res['config'].get('tolerance_basis', '')}. rise_vs_shorter is listed for every setting with a shorter "
        "length, flagged or not.</p>" + H.table(pd.DataFrame(res["overfitting"]), [
            "model", "dataset", "data_size", "iters", "n_runs", "val_loss", "val_loss_sd", "train_probe_loss", "gap",
            "rise_vs_shorter", "shorter_iters", "curve_rise", "curve_min_step", "flag", "reason"], flag_col="flag",
            name="Overfitting table"),
        "Gain from more data": "<p>gain = held-out loss at the smallest minus at the largest of the data sizes "
        "every compared model has at that length (shared_sizes; positive: more data helps), so gains are "
        "compared over one range; own_gain is over the model's own sizes, for reference. last_gain = the "
        "last shared step up in data.</p>" + H.table(
            gain, ["model", "params", "series", "iters", "n_sizes", "shared_sizes", "d_min", "d_max",
                   "loss_at_d_min", "loss_at_d_max", "gain", "rel_gain", "last_gain", "still_gains", "own_d_min",
                   "own_d_max", "own_gain", "message"], name="Gain table"),
        "Scaling-law fits": "<p>Huber loss (delta 1e-3) on log-loss from a grid of starts; a parameter at a "
        "bound, or whose CI reaches a bound or spans half the exponent range, is shown as not identified "
        "(identification says why).</p><h3>Per model and length: L(D) = E + B*D^-beta</h3>" + H.table(per, [
            "model", "series", "iters", "n_sizes", "dof", "E", "ci.E_lo", "ci.E_hi", "B", "beta", "ci.beta_lo",
            "ci.beta_hi", "r2", "holdout.error", "identification", "note", "message"], name="Per-model fits")
        + "<h3>Joint per length: L(N, D) = E + A*N^-alpha + B*D^-beta</h3>" + H.table(joint, [
            "series", "iters", "n_points", "n_models", "n_sizes", "E", "A", "alpha", "ci.alpha_lo", "ci.alpha_hi",
            "B", "beta", "ci.beta_lo", "ci.beta_hi", "r2", "holdout.mean_abs_error", "holdout.max_abs_error",
            "identification", "message"], name="Joint fits"),
        "Choosing runs by validation loss": H.table(sel, [
            "group", "metric", "n", "same", "metric_lost", "by_val_loss.run", "by_val_loss.value",
            "by_metric.run", "by_metric.value", "message"], name="Selection table"),
    }


PREDICTION_TITLE = "Downstream metrics predicted from held-out loss"


def _prediction(res: dict, same: dict[str, list[str]]) -> str | None:
    """The fits (features, leave-one-out error, interval) and one row per run: measured and predicted side by
    side, each row saying whether its number was measured or is a prediction. None without any metric."""
    fits = _once(res.get("prediction", {}).get("fits") or [], same)
    if not fits:
        return None
    rows = pd.DataFrame(_once(res["prediction"].get("rows") or [], same))
    if not rows.empty:
        rows["value_is"] = rows["predicted"].map({True: "predicted", False: "measured"})
    fit_table = flatten_rows(fits)
    if "residual_interval" in fit_table.columns:  # [lo, hi] of the leave-one-out residuals
        fit_table[["interval_lo", "interval_hi"]] = pd.DataFrame(
            [v if isinstance(v, list) else [None, None] for v in fit_table.pop("residual_interval")],
            index=fit_table.index)
    level = f"{100 * float(fits[0].get('ci_level') or 0.95):.0f}%"
    return (
        "<p>Each downstream metric fitted by least squares on the runs that have it, from held-out loss (and "
        "log10 of the parameter count where that lowers the leave-one-out error). loo_mae: the mean absolute "
        "error of predicting each run from a fit without it (the error to expect on a run that was not "
        f"fine-tuned). A run without the metric gets a prediction with a {level} interval from the leave-one-out "
        "errors; for a measured run the prediction is its leave-one-out one. value_is says which numbers were "
        "measured and which are predictions: a predicted value is never a measurement.</p>"
        + H.table(fit_table, ["metric", "features", "n_fit", "n_predicted", "loo_mae", "loo_max_error",
                              "interval_lo", "interval_hi", "message"], name="Prediction fits")
        + "<h3>Measured and predicted, per run</h3>"
        + H.table(rows, ["metric", "run", "model", "data_size", "iters", "seed", "val_loss", "value_is", "measured",
                         "prediction", "prediction_lo", "prediction_hi"], name="Predictions"))


def _eval_data_note(runs: pd.DataFrame) -> str:
    """Which data each evaluation's metrics were measured on (the eval_<name>_data columns), so a downstream
    number is never read without its data set."""
    items = []
    for col in eval_data_columns(runs):
        names = sorted({str(v) for v in runs[col].dropna()})
        if names:
            evaluation = col.removeprefix("eval_").removesuffix(EVAL_DATA_SUFFIX)
            items.append(f"<li>eval_{html.escape(evaluation)}_*: {html.escape('; '.join(names))}</li>")
    return f"<p>Downstream metrics are measured on:</p><ul>{''.join(items)}</ul>" if items else ""


def _gallery(input_path: Path, runs: pd.DataFrame) -> list[dict]:
    sizes = sorted(runs["data_size"].unique())
    rows = []
    for model in model_order(runs):
        for it in sorted(runs.loc[runs["model"] == model, "iters"].unique()):
            cells = []
            for d in sizes:
                sub = runs[(runs["model"] == model) & (runs["iters"] == it) & (runs["data_size"] == d)]
                pic = next((p for p in (RunDir(input_path / "runs" / r).latest_recon() for r in sub["run"]) if p), None)
                cap = f"{sub['run'].iloc[0]}, {pic.stem.replace('_', ' ')}" if pic else ""
                cells.append({"size": d, "path": pic, "caption": cap})
            if any(c["path"] for c in cells):
                rows.append({"label": f"{model}, {int(it):,} it", "cells": cells})
    return rows


def build_report(input_path, out_dir=None, extra_sections: dict[str, str] | None = None, *,
                 formats="png", dpi: int = F.DPI, **analyze_kw) -> Path:
    """Analyse INPUT and write the report; returns the path of report.html. ``extra_sections``: title -> HTML
    appended to the tables (the demo's seed spread). ``formats``: the figure files, 'png,svg,pdf' or a
    sequence (PNG is always written: the HTML embeds it); ``dpi``: their resolution. Raises ResultsError
    when nothing can be analysed, ConfigError for a bad format or dpi."""
    fig_out = F.output(formats, dpi)  # checked before any work
    input_path = Path(input_path)
    out = Path(out_dir) if out_dir is not None else default_out(input_path, "report")
    res, runs, curves = analyze_frames(input_path, out / "tables", **analyze_kw)
    atomic_write_text(out / "tables" / "analysis.json", json.dumps(res, indent=1, allow_nan=False))
    same = res.get("identical_metrics") or {}  # the analysis owns which metrics are the same numbers
    figs = _figures(res, runs, curves, out / "figures", fig_out, same)
    gallery = H.gallery(_gallery(input_path, runs)) if is_study_dir(input_path) else None
    path = out / "report.html"
    tables = _tables(res, same)
    corr_title = "Validation loss vs downstream metrics"
    tables[corr_title] = _eval_data_note(runs) + tables[corr_title]
    if "branched_from" in runs.columns and runs["branched_from"].notna().any():
        shared = runs[runs["branched_from"].notna()]
        tables["Shared training prefixes"] = (
            "<p>These runs were trained from a longer run's checkpoint at the step where their learning-rate "
            "schedules part (the same run it would have been alone, for less compute).</p>"
            + H.table(shared, ["run", "model", "data_size", "iters", "branched_from"]))
    predicted = _prediction(res, same)
    if predicted is not None:
        tables[PREDICTION_TITLE] = predicted
    tables.update(extra_sections or {})
    atomic_write_text(path, H.page(res, figs, tables, gallery, res["summary"],
                                   fig_out.formats))
    return path
