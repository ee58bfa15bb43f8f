"""The study report: `build_report(input_path, out_dir)` writes

    out_dir/report.html      self-contained (inline CSS, base64 images, no scripts, no network)
    out_dir/figures/*.png    the figures
    out_dir/tables/*.csv     the analysis tables (as `mimscale analyze` writes them) + analysis.json

`report_main(argv)` is the `mimscale report` command (exit 0 when a report was written, 2 when
nothing could be analysed).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from ..analysis import add_common_args, analyze_frames, default_out, flatten_rows
from ..analysis.correlation import model_order
from ..analysis.results import is_study_dir
from ..rundir import RunDir, atomic_write_text
from . import figures as F
from . import html as H

__all__ = ["build_report", "report_main"]


def _figures(res: dict, runs: pd.DataFrame, curves: pd.DataFrame, fig_dir: Path) -> list[dict]:
    tol = res["config"]["tolerance"]
    over = pd.DataFrame(res["overfitting"])
    specs = [
        ("Validation-loss curves", "loss_curves", "Loss curves per run",
         "Held-out loss (solid) and the same loss on a fixed probe of the training subset (dashed) "
         "against the step, coloured by data size. A held-out curve that turns up while the dashed one "
         "keeps falling is overfitting.", lambda p: F.loss_curves(curves, runs, p)),
        ("Held-out loss vs data size", "loss_vs_data", "Final held-out loss vs data size",
         "One panel per training length, a line per model (seed means; faint dots are single runs). "
         "Dashed: the per-model fit L(D) = E + B*D^-beta.",
         lambda p: F.loss_vs_data(runs, res["fits"]["per_model"], p)),
        ("Downstream metrics vs data size", "metric_vs_data", "Downstream metrics vs data size",
         "Each eval_* metric against the number of pre-training images, per model and length.",
         lambda p: F.metric_vs_data(runs, res["metrics"], p)),
        ("Validation loss vs downstream metrics", "loss_vs_metric", "Held-out loss vs downstream metrics",
         "Each point is a run (colour: model, marker: length); titles give the correlations over all runs. "
         "The table gives them per model with bootstrap CIs.",
         lambda p: F.loss_vs_metric(runs, res["metrics"], res["correlation"], p)),
        ("The grid and overfitting", "grid_heatmap", "The grid",
         f"Final held-out loss (top) and train/val gap (bottom, where logged) per model and data size; red "
         f"outlines mark settings flagged as overfitting (rise > {tol:g}).",
         lambda p: F.grid_heatmap(over, runs, p)),
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


def _tables(res: dict) -> dict[str, str]:
    corr = flatten_rows(res["correlation"])
    per, joint = flatten_rows(res["fits"]["per_model"]), flatten_rows(res["fits"]["joint"])
    sel = flatten_rows(res["selection"])
    return {
        "Validation loss vs downstream metrics": H.table(corr, [
            "group", "metric", "n", "pearson", "pearson_ci_lo", "pearson_ci_hi", "spearman", "spearman_ci_lo",
            "spearman_ci_hi", "kendall", "expected_sign", "message"]),
        "The grid and overfitting": "<h3>Overfitting table</h3>" + H.table(pd.DataFrame(res["overfitting"]), [
            "model", "data_size", "iters", "val_loss", "train_probe_loss", "gap", "rise_vs_shorter", "curve_rise",
            "curve_min_step", "flag", "reason"], flag_col="flag"),
        "Gain from more data": "<p>gain = held-out loss at the smallest minus at the largest data size "
        "(positive: more data helps); last_gain = the same for the last step up in data.</p>" + H.table(
            pd.DataFrame(res["data_gain"]), ["model", "params", "iters", "n_sizes", "d_min", "d_max",
                                             "loss_at_d_min", "loss_at_d_max", "gain", "rel_gain", "last_gain",
                                             "still_gains"]),
        "Scaling-law fits": "<h3>Per model and length: L(D) = E + B*D^-beta</h3>" + H.table(per, [
            "model", "iters", "n_sizes", "dof", "E", "ci.E_lo", "ci.E_hi", "B", "beta", "ci.beta_lo",
            "ci.beta_hi", "r2", "holdout.error", "note", "message"]) + "<h3>Joint per length: L(N, D) = E + A*N^-alpha + B*D^-beta (soft-L1 on "
        "log-loss)</h3>" + H.table(joint, [
            "iters", "n_points", "n_models", "n_sizes", "E", "A", "alpha", "ci.alpha_lo", "ci.alpha_hi", "B",
            "beta", "ci.beta_lo", "ci.beta_hi", "r2", "holdout.mean_abs_error", "holdout.max_abs_error",
            "message"]),
        "Choosing runs by validation loss": H.table(sel, [
            "group", "metric", "n", "same", "metric_lost", "by_val_loss.run", "by_val_loss.value",
            "by_metric.run", "by_metric.value", "message"]),
    }


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


def build_report(input_path, out_dir=None, **analyze_kw) -> Path:
    """Analyse INPUT and write the report; returns the path of report.html. Raises ResultsError when
    nothing can be analysed."""
    input_path = Path(input_path)
    out = Path(out_dir) if out_dir is not None else default_out(input_path, "report")
    res, runs, curves = analyze_frames(input_path, out / "tables", **analyze_kw)
    atomic_write_text(out / "tables" / "analysis.json", json.dumps(res, indent=1, allow_nan=False))
    figs = _figures(res, runs, curves, out / "figures")
    gallery = H.gallery(_gallery(input_path, runs)) if is_study_dir(input_path) else None
    path = out / "report.html"
    atomic_write_text(path, H.page(res, figs, _tables(res), gallery))
    return path


def report_main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mimscale report", description="Self-contained HTML report (figures, "
                                "tables, findings) of a study directory or results CSV.")
    add_common_args(p)
    a = p.parse_args(argv)
    path = build_report(a.input, a.out, tolerance=a.tolerance, seed=a.seed, n_boot=a.n_boot, fit_boot=a.fit_boot)
    print(path)
    return 0
