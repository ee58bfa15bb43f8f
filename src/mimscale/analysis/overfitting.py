"""Overfitting: does the held-out loss of a setting rise with more training?

Two rules flag a setting, both with the same tolerance in loss units:

- length rule (any input): the setting's final val_loss is higher, by more than the tolerance, than
  the lowest val_loss of the same (model, dataset, data_size) at a shorter length;
- curve rule (study directories): the held-out loss curve (averaged over the setting's seeds on
  their common steps) has its minimum before the last evaluation and ends more than the tolerance
  above that minimum.

The tolerance (`tolerance_for`) is always stated with its basis:

- from replicate seeds where the grid has settings with >= 2 seeds: SEED_MULTIPLE x sqrt(2) x the
  pooled seed standard deviation of the held-out loss (sqrt(2) sigma is the spread of a difference of
  two single runs);
- otherwise LOSS_SCALE_FRACTION of the median held-out loss (0.2%: 0.0009 on a loss scale of 0.45;
  rises of 0.001-0.005 are what a large study's overfitting looks like on such a scale);
- or the user's `--tolerance`; 0 flags every rise.

The table also carries the train/val gap (final val_loss - final loss on a fixed probe of the
training subset) where the runs logged it: it separates memorising settings far more clearly than a
rise, which can be within noise. Every rise is listed (`rises`) with its size, flagged or not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .results import ResultsError, settings_table

SEED_MULTIPLE = 2.0
LOSS_SCALE_FRACTION = 0.002


def tolerance_for(runs: pd.DataFrame, tolerance: float | None = None) -> tuple[float, str, str]:
    """(tolerance, its basis in words, source: "user" | "seeds" | "loss scale")."""
    if tolerance is not None:
        if not np.isfinite(tolerance) or tolerance < 0:
            raise ResultsError(f"--tolerance must be a number >= 0 (got {tolerance})")
        return float(tolerance), "set by --tolerance" + (" (every rise is flagged)" if tolerance == 0 else ""), \
            "user"
    keys = [c for c in ("model", "dataset", "data_size", "iters") if c in runs.columns]
    groups = runs.groupby(keys)["val_loss"]
    n, var = groups.size(), groups.var(ddof=1)
    rep = n >= 2
    dof = int((n[rep] - 1).sum())
    if dof > 0:
        sd = float(np.sqrt(((n[rep] - 1) * var[rep]).sum() / dof))
        if sd > 0:
            tol = SEED_MULTIPLE * np.sqrt(2) * sd
            return tol, (f"{SEED_MULTIPLE:g} x sqrt(2) x the pooled seed SD {sd:.2g} of the held-out loss over "
                         f"{int(rep.sum())} setting(s) with >= 2 seeds"), "seeds"
    med = float(runs["val_loss"].median())
    tol = LOSS_SCALE_FRACTION * abs(med)
    why = "no setting has 2 seeds" if dof == 0 else "the replicate seeds do not differ"
    return tol, f"{100 * LOSS_SCALE_FRACTION:g}% of the median held-out loss {med:.3g} ({why})", "loss scale"


def _curves_by_run(curves: pd.DataFrame | None, split: str = "val") -> dict[str, pd.Series]:
    """run -> its held-out loss curve (index: step; the last value wins for a step logged twice)."""
    if curves is None or curves.empty:
        return {}
    sel = curves[(curves["split"] == split) & (curves["name"] == "loss")]
    return {run: g.groupby("step")["value"].last().sort_index() for run, g in sel.groupby("run")}


def _mean_curve(by_run: dict[str, pd.Series], runs: list[str]) -> pd.Series | None:
    """Mean curve over `runs` on the steps all of them logged; None if none did."""
    got = [by_run[r] for r in runs if r in by_run]
    if not got:
        return None
    wide = pd.concat(got, axis=1).dropna()
    return wide.mean(axis=1).sort_index() if not wide.empty else None


def _curve_rule(curve: pd.Series | None, tolerance: float) -> dict:
    out = {"curve_min": np.nan, "curve_min_step": np.nan, "curve_final_step": np.nan, "curve_rise": np.nan,
           "curve_flag": False, "curve_reason": ""}
    if curve is None or len(curve) < 2:
        return out
    min_step = curve.idxmin()
    final_step = curve.index[-1]
    rise = float(curve.iloc[-1] - curve.min())
    out.update(curve_min=float(curve.min()), curve_min_step=float(min_step),
               curve_final_step=float(final_step), curve_rise=rise)
    if min_step < final_step and rise > tolerance:
        out["curve_flag"] = True
        out["curve_reason"] = (f"held-out curve bottoms at {curve.min():.4f} (step {min_step:g} of "
                               f"{final_step:g}) and ends {rise:+.4f} above it (> tolerance {tolerance:g})")
    return out


def _best_shorter(st: pd.DataFrame) -> pd.DataFrame:
    """Per setting: the length and val_loss of the lowest val_loss of the same data at a shorter length."""
    keys = [c for c in ("model", "dataset", "data_size") if c in st.columns]
    out = pd.DataFrame(index=st.index, columns=["shorter_iters", "shorter_loss"], dtype=float)
    for _, g in st.groupby(keys, sort=False):
        g = g.sort_values("iters")
        best_it, best_loss = np.nan, np.inf
        for i, it, loss in zip(g.index, g["iters"], g["val_loss"]):
            if np.isfinite(best_loss):
                out.loc[i] = (best_it, best_loss)
            if loss < best_loss:
                best_it, best_loss = it, loss
    return out


def overfitting_table(runs: pd.DataFrame, curves: pd.DataFrame | None = None,
                      tolerance: float = 0.0) -> pd.DataFrame:
    """One row per setting with `flag` and a plain-words `reason` (see the module docstring)."""
    st = settings_table(runs)
    shorter = _best_shorter(st)
    val_curves = _curves_by_run(curves)
    rows = []
    for i, s in st.iterrows():
        row = {"model": s["model"], "params": s["params"], "dataset": s.get("dataset", np.nan),
               "series": s.get("series", s.get("dataset", np.nan)), "data_size": s["data_size"],
               "iters": s["iters"], "n_runs": s["n_runs"], "val_loss": s["val_loss"],
               "val_loss_sd": s["val_loss_sd"], "train_probe_loss": s.get("train_probe_loss", np.nan)}
        row["gap"] = row["val_loss"] - row["train_probe_loss"]
        reasons = []
        length_flag = False
        row["shorter_iters"], row["rise_vs_shorter"] = np.nan, np.nan
        if np.isfinite(shorter.at[i, "shorter_loss"]):
            best = {"iters": shorter.at[i, "shorter_iters"], "val_loss": shorter.at[i, "shorter_loss"]}
            rise = float(s["val_loss"] - best["val_loss"])
            row["shorter_iters"], row["rise_vs_shorter"] = best["iters"], rise
            if rise > tolerance:
                length_flag = True
                reasons.append(f"val_loss {s['val_loss']:.4f} at {s['iters']:g} it is {rise:+.4f} vs "
                               f"{best['val_loss']:.4f} at {best['iters']:g} it (> tolerance {tolerance:g})")
        curve = _curve_rule(_mean_curve(val_curves, s["runs"]), tolerance)
        if curve["curve_flag"]:
            reasons.append(curve.pop("curve_reason"))
        else:
            curve.pop("curve_reason")
        row.update(curve)
        row["flag"] = bool(length_flag or row.pop("curve_flag"))
        if not reasons:
            parts = []
            if not np.isnan(row["rise_vs_shorter"]):
                parts.append(f"{row['rise_vs_shorter']:+.4f} vs {row['shorter_iters']:g} it")
            if not np.isnan(row["curve_rise"]):
                parts.append(f"curve {row['curve_rise']:+.4f} after its minimum")
            reasons.append("; ".join(parts) + f": within tolerance {tolerance:g}" if parts
                           else "no shorter length and no curve to compare with")
        row["reason"] = "; ".join(reasons)
        rows.append(row)
    cols = ["model", "params", "dataset", "series", "data_size", "iters", "n_runs", "val_loss", "val_loss_sd",
            "train_probe_loss", "gap",
            "shorter_iters", "rise_vs_shorter", "curve_min", "curve_min_step", "curve_final_step",
            "curve_rise", "flag", "reason"]
    return pd.DataFrame(rows, columns=cols)


def rises(over: list[dict]) -> list[dict]:
    """Every rise of the held-out loss with longer training, largest first, flagged or not."""
    out = [{k: r.get(k) for k in ("model", "dataset", "data_size", "iters", "shorter_iters", "rise_vs_shorter",
                                  "flag")} for r in over if (r.get("rise_vs_shorter") or 0) > 0]
    return sorted(out, key=lambda r: -r["rise_vs_shorter"])
