"""How well the pre-training validation loss predicts each downstream metric.

Point estimates are scipy.stats' pearsonr / spearmanr / kendalltau. Confidence intervals are a seeded
paired percentile bootstrap over runs: resample runs with replacement, recompute the coefficient,
take the (1-level)/2 and (1+level)/2 quantiles. Resamples in which either variable is constant have
no correlation and are left out (their count is reported as n_boot - n_boot_valid); this matters
only for very few runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .results import eval_columns, higher_is_better

MIN_RUNS = 3


def _boot_ci(x: np.ndarray, y: np.ndarray, n_boot: int, level: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    xb, yb = x[idx], y[idx]
    valid = (np.ptp(xb, axis=1) > 0) & (np.ptp(yb, axis=1) > 0)
    xb, yb = xb[valid], yb[valid]
    out = {"n_boot": n_boot, "n_boot_valid": int(valid.sum()), "pearson_ci": None, "spearman_ci": None}
    if len(xb) < 10:
        return out
    pear = stats.pearsonr(xb, yb, axis=1).statistic
    # Spearman's rho is Pearson's r of the (average) ranks, which vectorises over resamples.
    spear = stats.pearsonr(stats.rankdata(xb, axis=1), stats.rankdata(yb, axis=1), axis=1).statistic
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    out["pearson_ci"] = [float(v) for v in np.percentile(pear, q)]
    out["spearman_ci"] = [float(v) for v in np.percentile(spear, q)]
    return out


def correlate(x, y, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Pearson, Spearman and Kendall of x with y, with p-values and bootstrap CIs (see module doc)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    out: dict = {"n": int(len(x)), "pearson": None, "pearson_p": None, "spearman": None, "spearman_p": None,
                 "kendall": None, "kendall_p": None, "pearson_ci": None, "spearman_ci": None,
                 "ci_level": level, "n_boot": n_boot, "n_boot_valid": 0, "message": None}
    if len(x) < MIN_RUNS:
        out["message"] = f"only {len(x)} run(s) with both values; a correlation needs at least {MIN_RUNS}"
        return out
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        which = "validation loss" if np.ptp(x) == 0 else "the metric"
        out["message"] = f"{which} is constant over these {len(x)} runs; no correlation is defined"
        return out
    pr = stats.pearsonr(x, y)
    sr = stats.spearmanr(x, y)
    kt = stats.kendalltau(x, y)
    out.update(pearson=float(pr.statistic), pearson_p=float(pr.pvalue), spearman=float(sr.statistic),
               spearman_p=float(sr.pvalue), kendall=float(kt.statistic), kendall_p=float(kt.pvalue))
    out.update(_boot_ci(x, y, n_boot, level, seed))
    if out["pearson_ci"] is None:
        out["message"] = (f"bootstrap CI not computed: only {out['n_boot_valid']} of {n_boot} resamples "
                          "had varying values")
    return out


def model_order(runs: pd.DataFrame) -> list[str]:
    """Models from smallest to largest backbone (ties by name)."""
    p = runs.groupby("model")["params"].median().reset_index().sort_values(["params", "model"])
    return list(p["model"])


def correlation_table(runs: pd.DataFrame, metrics: list[str] | None = None, *, n_boot: int = 2000,
                      level: float = 0.95, seed: int = 0) -> list[dict]:
    """val_loss vs each eval_* metric, over all runs ("all") and within each model."""
    metrics = eval_columns(runs) if metrics is None else metrics
    rows = []
    groups = [("all", runs)] + [(m, runs[runs["model"] == m]) for m in model_order(runs)]
    for metric in metrics:
        for name, sub in groups:
            res = correlate(sub["val_loss"], sub[metric], n_boot=n_boot, level=level, seed=seed)
            # Lower loss should go with a better metric: negative correlation if higher is better.
            expected = "negative" if higher_is_better(metric) else "positive"
            rows.append({"group": name, "metric": metric, "expected_sign": expected, **res})
    return rows


def weakest(rows: list[dict]) -> dict | None:
    """The row whose Spearman correlation is weakest in the expected direction: closest to zero or of the
    wrong sign. With the expected negative sign (a metric where higher is better) that is the largest
    (least negative) Spearman; with the expected positive sign, the smallest."""
    rows = [r for r in rows if r.get("spearman") is not None]
    if not rows:
        return None
    return max(rows, key=lambda r: r["spearman"] if r["expected_sign"] == "negative" else -r["spearman"])


def weakest_words(row: dict) -> str:
    """How a report names the weakest row: "least negative" (expected negative sign), not "closest to zero",
    which a correlation of the wrong sign (+0.80 beside +0.07) is not."""
    return "least negative" if row["expected_sign"] == "negative" else "least positive"


def selection_table(runs: pd.DataFrame, metrics: list[str] | None = None) -> list[dict]:
    """Would picking the run with the lowest val_loss also pick the best run by each metric?

    Compared over the runs that have the metric, for all runs and within each length (iters).
    `metric_lost` is how much worse the val-loss choice is on the metric (0 when it is a best run).
    """
    metrics = eval_columns(runs) if metrics is None else metrics
    rows = []
    for metric in metrics:
        groups = [("all", runs)]
        if runs["iters"].nunique() > 1:
            groups += [(f"iters={it:g}", runs[runs["iters"] == it]) for it in sorted(runs["iters"].unique())]
        for name, sub in groups:
            sub = sub[sub[metric].notna()]
            row: dict = {"group": name, "metric": metric, "n": int(len(sub)), "same": None,
                         "metric_lost": None, "by_val_loss": None, "by_metric": None, "message": None}
            if len(sub) < 2:
                row["message"] = f"{len(sub)} run(s) with {metric}; nothing to choose between"
                rows.append(row)
                continue
            hib = higher_is_better(metric)
            pick_val = sub.loc[sub["val_loss"].idxmin()]
            best_value = sub[metric].max() if hib else sub[metric].min()
            pick_metric = sub.loc[(sub[metric] == best_value).idxmax()]
            lost = (best_value - pick_val[metric]) if hib else (pick_val[metric] - best_value)
            row.update(same=bool(pick_val[metric] == best_value), metric_lost=float(lost),
                       by_val_loss=_describe(pick_val, metric), by_metric=_describe(pick_metric, metric))
            rows.append(row)
    return rows


def _describe(r: pd.Series, metric: str) -> dict:
    return {"run": str(r["run"]), "model": str(r["model"]), "data_size": float(r["data_size"]),
            "iters": float(r["iters"]), "val_loss": float(r["val_loss"]), "value": float(r[metric])}
