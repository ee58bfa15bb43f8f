"""Overfitting: does the held-out loss of a setting rise with more training?

Two rules, both with the same tolerance (default 0.005 in loss units; a tiny CPU grid's seed-to-seed
spread of the final held-out loss was 0.004-0.017, so smaller rises are not evidence):

- length rule (any input): the setting's final val_loss is higher, by more than the tolerance, than
  the lowest val_loss of the same (model, data_size) at a shorter length;
- curve rule (study directories): the held-out loss curve (averaged over the setting's seeds on
  their common steps) has its minimum before the last evaluation and ends more than the tolerance
  above that minimum.

The table also carries the train/val gap (final val_loss - final loss on a fixed probe of the
training subset) where the runs logged it: it separates memorising settings far more clearly than a
rise, which can be within noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .results import settings_table

DEFAULT_TOLERANCE = 0.005


def val_curve(curves: pd.DataFrame, runs: list[str], split: str = "val") -> pd.Series | None:
    """Mean loss curve (index: step) over `runs` on the steps all of them logged; None if none did."""
    if curves is None or curves.empty:
        return None
    sel = curves[(curves["split"] == split) & (curves["name"] == "loss") & curves["run"].isin(runs)]
    if sel.empty:
        return None
    # Last value wins if a resumed run logged a step twice.
    wide = sel.pivot_table(index="step", columns="run", values="value", aggfunc="last").dropna()
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


def overfitting_table(runs: pd.DataFrame, curves: pd.DataFrame | None = None,
                      tolerance: float = DEFAULT_TOLERANCE) -> pd.DataFrame:
    """One row per setting with `flag` and a plain-words `reason` (see the module docstring)."""
    st = settings_table(runs)
    rows = []
    for _, s in st.iterrows():
        same = st[(st["model"] == s["model"]) & (st["data_size"] == s["data_size"])
                  & (st["iters"] < s["iters"])]
        row = {"model": s["model"], "params": s["params"], "data_size": s["data_size"], "iters": s["iters"],
               "n_runs": s["n_runs"], "val_loss": s["val_loss"],
               "train_probe_loss": s.get("train_probe_loss", np.nan)}
        row["gap"] = row["val_loss"] - row["train_probe_loss"]
        reasons = []
        length_flag = False
        row["shorter_iters"], row["rise_vs_shorter"] = np.nan, np.nan
        if not same.empty:
            best = same.loc[same["val_loss"].idxmin()]
            rise = float(s["val_loss"] - best["val_loss"])
            row["shorter_iters"], row["rise_vs_shorter"] = best["iters"], rise
            if rise > tolerance:
                length_flag = True
                reasons.append(f"val_loss {s['val_loss']:.4f} at {s['iters']:g} it is {rise:+.4f} vs "
                               f"{best['val_loss']:.4f} at {best['iters']:g} it (> tolerance {tolerance:g})")
        curve = _curve_rule(val_curve(curves, s["runs"]), tolerance)
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
    cols = ["model", "params", "data_size", "iters", "n_runs", "val_loss", "train_probe_loss", "gap",
            "shorter_iters", "rise_vs_shorter", "curve_min", "curve_min_step", "curve_final_step",
            "curve_rise", "flag", "reason"]
    return pd.DataFrame(rows, columns=cols)
