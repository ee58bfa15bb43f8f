"""Does this grid show the paper's three findings? Each check states its criterion, its numbers and a
verdict ("yes", "partly", "no" or "n/a"); nothing is asserted that the numbers do not show.

1. Overfitting on small data: on the smallest data size the largest model's held-out loss stops
   improving over the last part of training (or rises after its minimum) by more than the tolerance
   while its training-probe loss keeps falling; its train/val gap is many times that of the same model
   on the largest data size and grows with model size; on the largest data size no held-out curve rises.
2. At the longest length, the gain from more data (held-out loss at the smallest minus at the largest
   data size) is larger for larger models.
3. Held-out loss and downstream accuracy are clearly negatively correlated across the grid (target:
   Spearman <= -0.7, with its bootstrap interval).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# "Stops improving" looks at the last part of training: demo-notes saw the stall in the last 40%.
TAIL_FRACTION = 0.4
# "Many times": the small-data gap of the largest model must be at least this multiple of its full-data gap.
GAP_RATIO_TARGET = 3.0
SPEARMAN_TARGET = -0.7


def _curve(curves: pd.DataFrame, run: str, split: str) -> pd.Series:
    c = curves[(curves["run"] == run) & (curves["split"] == split) & (curves["name"] == "loss")]
    return c.groupby("step")["value"].mean().sort_index()


def _tail_change(curve: pd.Series) -> float:
    """Loss at the start of the last TAIL_FRACTION of training minus the final loss (> 0: still falling)."""
    if len(curve) < 3:
        return float("nan")
    start = curve.index.max() * (1 - TAIL_FRACTION)
    at_start = curve[curve.index <= start].iloc[-1]
    return float(at_start - curve.iloc[-1])


def _rise(curve: pd.Series) -> float:
    return float(curve.iloc[-1] - curve.min()) if len(curve) else float("nan")


def _one_run(runs: pd.DataFrame, model, size, iters):
    sub = runs[(runs["model"] == model) & (runs["data_size"] == size) & (runs["iters"] == iters)]
    return sub.iloc[0] if len(sub) else None


def overfitting_finding(runs: pd.DataFrame, curves: pd.DataFrame, models: list[str], tol: float) -> dict:
    if curves is None or curves.empty or "train_probe_loss" not in runs:
        return {"finding": "overfitting on small data", "verdict": "n/a",
                "text": "needs validation curves and training-probe losses (a study directory)"}
    longest, d_min, d_max = runs["iters"].max(), runs["data_size"].min(), runs["data_size"].max()
    big = models[-1]
    r_small, r_full = _one_run(runs, big, d_min, longest), _one_run(runs, big, d_max, longest)
    if r_small is None or r_full is None:
        return {"finding": "overfitting on small data", "verdict": "n/a", "text": "grid lacks the needed runs"}
    val, probe = _curve(curves, r_small["run"], "val"), _curve(curves, r_small["run"], "train_probe")
    val_tail, probe_tail, rise = _tail_change(val), _tail_change(probe), _rise(val)
    stalls = val_tail < tol or rise > tol
    probe_falls = probe_tail > tol
    gaps = {}
    for m in models:
        r = _one_run(runs, m, d_min, longest)
        if r is not None:
            gaps[m] = float(r["val_loss"] - r["train_probe_loss"])
    gap_full = float(r_full["val_loss"] - r_full["train_probe_loss"])
    # A full-pool gap at or below the noise level (the tolerance) is floored there, so the ratio stays finite.
    ratio = gaps[big] / max(gap_full, tol) if tol > 0 else gaps[big] / max(gap_full, 1e-9)
    ordered = [gaps[m] for m in models if m in gaps]
    grows = all(b > a for a, b in zip(ordered, ordered[1:]))
    full_rises = []
    for _, r in runs[runs["data_size"] == d_max].iterrows():
        c = _curve(curves, r["run"], "val")
        if _rise(c) > tol:
            full_rises.append(f"{r['model']} {int(r['iters']):,} it (+{_rise(c):.4f})")
    checks = [stalls and probe_falls, ratio >= GAP_RATIO_TARGET, grows, not full_rises]
    verdict = "yes" if all(checks) else "partly" if any(checks) else "no"
    text = (f"{big} on {int(d_min):,} images, {int(longest):,} it: held-out loss changed by {-val_tail:+.4f} over "
            f"the last {int(TAIL_FRACTION * 100)}% of training and ends {rise:+.4f} above its minimum "
            f"({'stops improving' if stalls else 'still improving'} at tolerance {tol:g}), while the "
            f"training-probe loss fell by {probe_tail:.4f} ({'keeps falling' if probe_falls else 'does not'}). "
            f"Its train/val gap is {gaps[big]:.4f} vs {gap_full:.4f} on {int(d_max):,} images "
            f"({ratio:.1f}x, the full-pool gap floored at the tolerance; target >= {GAP_RATIO_TARGET:g}x). Gap on {int(d_min):,} images by model size: "
            + ", ".join(f"{m} {g:.4f}" for m, g in gaps.items())
            + f" ({'grows' if grows else 'does not grow'} with size). On {int(d_max):,} images "
            + ("no held-out curve rises." if not full_rises else "these curves rise: " + "; ".join(full_rises)))
    return {"finding": "overfitting on small data", "verdict": verdict, "text": text,
            "numbers": {"val_tail_change": -val_tail, "val_rise_after_min": rise, "probe_tail_drop": probe_tail,
                        "gap_small": gaps[big], "gap_full": gap_full, "gap_ratio": ratio, "gaps_by_model": gaps,
                        "full_pool_rises": full_rises}}


def data_gain_finding(gain_rows: list[dict], models: list[str]) -> dict:
    rows = [r for r in gain_rows if r.get("gain") is not None and not np.isnan(r["gain"])]
    if not rows:
        return {"finding": "more data helps larger models more", "verdict": "n/a", "text": "no data-gain rows"}
    longest = max(r["iters"] for r in rows)
    by_model = {r["model"]: r["gain"] for r in rows if r["iters"] == longest}
    gains = [by_model[m] for m in models if m in by_model]
    increasing = all(b > a for a, b in zip(gains, gains[1:]))
    larger_than_smallest = gains[-1] > gains[0] if len(gains) > 1 else False
    verdict = "yes" if increasing and len(gains) > 1 else "partly" if larger_than_smallest else "no"
    text = (f"At {int(longest):,} it, held-out loss gain from the smallest to the largest data size: "
            + ", ".join(f"{m} {by_model[m]:+.4f}" for m in models if m in by_model)
            + f" ({'increases' if increasing else 'does not increase'} with model size).")
    shorter = sorted({r["iters"] for r in rows if r["iters"] < longest})
    if shorter:
        s = shorter[0]
        text += f" At {int(s):,} it: " + ", ".join(f"{r['model']} {r['gain']:+.4f}" for r in sorted(
            (r for r in rows if r["iters"] == s), key=lambda r: models.index(r["model"]))) + "."
    return {"finding": "more data helps larger models more", "verdict": verdict, "text": text,
            "numbers": {"iters": longest, "gain_by_model": by_model}}


def correlation_finding(corr_rows: list[dict]) -> dict:
    rows = [r for r in corr_rows if r.get("group") == "all" and r.get("spearman") is not None]
    if not rows:
        return {"finding": "validation loss predicts downstream accuracy", "verdict": "n/a",
                "text": "no downstream metric to correlate with"}
    # The paper correlates with top-1 accuracy (and mIoU / AP for dense tasks); top-5 and other columns are
    # listed but do not decide the verdict when a headline metric exists.
    headline = [r for r in rows if r["metric"].endswith(("top1", "miou"))] or rows
    parts, oks = [], []
    for r in headline + [r for r in rows if r not in headline]:
        ci = r.get("spearman_ci") or [float("nan"), float("nan")]
        ok = r["spearman"] <= SPEARMAN_TARGET
        if r in headline:
            oks.append(ok)
        parts.append(f"{r['metric']}: Spearman {r['spearman']:+.2f} (95% CI {ci[0]:+.2f} to {ci[1]:+.2f}), "
                     f"Pearson {r['pearson']:+.2f}, n={r['n']}")
    verdict = "yes" if all(oks) else "partly" if any(oks) else "no"
    return {"finding": "validation loss predicts downstream accuracy", "verdict": verdict,
            "text": "; ".join(parts) + f" (target: Spearman <= {SPEARMAN_TARGET:g} for "
            + ", ".join(r["metric"] for r in headline) + ").",
            "numbers": {r["metric"]: r["spearman"] for r in headline},
            "other_metrics": {r["metric"]: r["spearman"] for r in rows if r not in headline}}


def paper_findings(res: dict, runs: pd.DataFrame, curves: pd.DataFrame) -> list[dict]:
    """The three checks, in the paper's order."""
    models = [m["name"] for m in res["models"]]  # ordered by parameter count
    tol = res["config"]["tolerance"]
    return [overfitting_finding(runs, curves, models, tol), data_gain_finding(res["data_gain"], models),
            correlation_finding(res["correlation"])]
