"""Does this grid show the paper's three findings? Each check states its criterion, its numbers and a
verdict ("yes", "partly", "no" or "n/a"); nothing is asserted that the numbers do not show. All three
work from a results table alone; a study directory's curves strengthen the first.

1. Overfitting on small data. Length rule (any grid with >= 2 lengths), on the primary dataset at the
   longest length against the best shorter length: the held-out loss rises by more than the tolerance
   on data smaller than the largest size; it does not rise on the largest size; the onset (the largest
   size at which a model still rises) is non-decreasing with model size (a pair whose larger model was
   not run where it would decide is "undecided", not a violation); the headline downstream metric falls
   in more than half of the flagged settings of the larger half of the rising models (where there is
   one). The rise itself need not grow with size: at the smallest size the smaller models rise the most
   on the paper's grid (docs/METHOD.md, "The findings as verdicts"). Curves (study
   directories): the largest model's held-out loss stops improving over the last part of training on
   its smallest size while its training-probe loss keeps falling; its train/val gap there is many
   times its gap on the largest size and grows with model size; no curve on the largest size rises.
   "yes": every check holds; "partly": a rise, a stall or a large gap is there but a check fails; "no":
   none of these.
2. More data helps larger models more: at the longest length, the gain from more data (held-out loss
   at the smallest minus at the largest of the data sizes every compared model has, on the primary
   series) increases with model size: "yes" strictly, "partly" when the largest model gains more than
   the smallest, else "no". Other lengths are listed.
3. Held-out loss and downstream accuracy are clearly negatively correlated across the grid, for the
   headline metric (a study's fine-tuned top-1, else every top-1 / mIoU): "yes" when Spearman <= -0.7 and
   its bootstrap interval lies below 0; "no" when the interval reaches 0 and the point is above -0.7;
   "partly" in between (strong but not significant, or significant but weaker than -0.7), so that noise
   moves a verdict by one step at most. The per-model correlations are listed, the weakest (closest to
   zero) named.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .correlation import weakest, weakest_words
from .results import higher_is_better

# "Stops improving" looks at the last part of training: the demo's feasibility runs saw the stall in the last 40%.
TAIL_FRACTION = 0.4
# "Many times": the small-data gap of the largest model must be at least this multiple of its full-data gap.
GAP_RATIO_TARGET = 3.0
SPEARMAN_TARGET = -0.7
OVERFIT = "overfitting on small data"


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


def _signed(v: float, fmt: str = "+.4f") -> str:
    """A curve's change in words: a number, or "too few points" where the curve has too few in its window."""
    return format(v, fmt) if np.isfinite(v) else "n/a (too few points)"


def _rise(curve: pd.Series) -> float:
    return float(curve.iloc[-1] - curve.min()) if len(curve) else float("nan")


def _one_run(runs: pd.DataFrame, model, size, iters):
    sub = runs[(runs["model"] == model) & (runs["data_size"] == size) & (runs["iters"] == iters)]
    return sub.iloc[0] if len(sub) else None


def _on_primary(runs: pd.DataFrame, primary) -> pd.DataFrame:
    return runs if primary is None or "series" not in runs else runs[runs["series"] == primary]


def _curve_evidence(runs: pd.DataFrame, curves: pd.DataFrame, models: list[str], tol: float) -> dict | None:
    if curves is None or curves.empty or "train_probe_loss" not in runs:
        return None
    longest = runs["iters"].max()
    at_longest = runs[runs["iters"] == longest]
    big = next((m for m in reversed(models) if (at_longest["model"] == m).any()), None)
    if big is None:
        return None
    d_min, d_max = at_longest.loc[at_longest["model"] == big, "data_size"].min(), runs["data_size"].max()
    r_small, r_full = _one_run(runs, big, d_min, longest), _one_run(runs, big, d_max, longest)
    if r_small is None or r_full is None or d_min == d_max:
        return None
    val, probe = _curve(curves, r_small["run"], "val"), _curve(curves, r_small["run"], "train_probe")
    val_tail, probe_tail, rise = _tail_change(val), _tail_change(probe), _rise(val)
    stalls, probe_falls = bool(val_tail < tol or rise > tol), bool(probe_tail > tol)
    gaps = {}
    for m in models:
        r = _one_run(runs, m, d_min, longest)
        if r is not None:
            gaps[m] = float(r["val_loss"] - r["train_probe_loss"])
    gap_full = float(r_full["val_loss"] - r_full["train_probe_loss"])
    # A full-pool gap at or below the noise level (the tolerance) is floored there, so the ratio stays finite.
    ratio = gaps[big] / max(gap_full, tol) if tol > 0 else gaps[big] / max(gap_full, 1e-9)
    ordered = list(gaps.values())
    grows = all(b > a for a, b in zip(ordered, ordered[1:]))
    full_rises = []
    for _, r in runs[runs["data_size"] == d_max].iterrows():
        c = _curve(curves, r["run"], "val")
        if _rise(c) > tol:
            full_rises.append(f"{r['model']} {int(r['iters']):,} it ({_rise(c):+.4f})")
    text = (f"Curves: {big} on {int(d_min):,} images, {int(longest):,} it: held-out loss changed by "
            f"{_signed(-val_tail)} over the last {int(TAIL_FRACTION * 100)}% of training and ends {_signed(rise)} "
            f"above its minimum ({'too few points to tell' if not np.isfinite(val_tail) else 'stops improving' if stalls else 'still improving'} at tolerance {tol:.2g}), "
            f"while the training-probe loss fell by {_signed(probe_tail, '.4f')} "
            f"({'too few points to tell' if not np.isfinite(probe_tail) else 'keeps falling' if probe_falls else 'does not'}). "
            f"Its train/val gap is {gaps[big]:.4f} vs {gap_full:.4f} on {int(d_max):,} images "
            f"({ratio:.1f}x, the full-pool gap floored at the tolerance; target >= {GAP_RATIO_TARGET:g}x). Gap on "
            f"{int(d_min):,} images by model size: " + ", ".join(f"{m} {g:.4f}" for m, g in gaps.items())
            + f" ({'grows' if grows else 'does not grow'} with size). On {int(d_max):,} images "
            + ("no held-out curve rises." if not full_rises else "these curves rise: " + "; ".join(full_rises)))
    return {"presence": [stalls and probe_falls, ratio >= GAP_RATIO_TARGET],
            "checks": [stalls and probe_falls, ratio >= GAP_RATIO_TARGET, grows, not full_rises], "text": text,
            "numbers": {"val_tail_change": -val_tail, "val_rise_after_min": rise, "probe_tail_drop": probe_tail,
                        "gap_small": gaps[big], "gap_full": gap_full, "gap_ratio": ratio, "gaps_by_model": gaps,
                        "full_pool_rises": full_rises}}


def headline_metric(metrics: list[str]) -> str | None:
    """The paper's downstream metric: a top-1 (or mIoU) column where there is one, else the first."""
    return next((m for m in metrics if m.endswith(("top1", "miou"))), metrics[0] if metrics else None)


def _metric_fell(runs: pd.DataFrame, r: dict, metric: str) -> bool | None:
    keys = (runs["model"] == r["model"]) & (runs["data_size"] == r["data_size"])
    if "dataset" in runs and r.get("dataset") is not None:
        keys &= runs["dataset"] == r["dataset"]
    long_ = runs.loc[keys & (runs["iters"] == r["iters"]), metric].mean()
    short = runs.loc[keys & (runs["iters"] == r["shorter_iters"]), metric].mean()
    if not (np.isfinite(long_) and np.isfinite(short)):
        return None
    return bool(long_ < short) if higher_is_better(metric) else bool(long_ > short)


def _onsets(by_model: dict[str, dict[float, float]], models: list[str], tol: float) -> dict[str, float | None]:
    """model -> the largest data size at which its held-out loss still rises (None: it rises nowhere)."""
    out = {}
    for m in models:
        if m in by_model:
            up = [s for s, v in by_model[m].items() if v > tol]
            out[m] = max(up) if up else None
    return out


def _onset_order(by_model: dict[str, dict[float, float]], onsets: dict[str, float | None], tol: float
                 ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(violations, undecided) pairs (smaller model, larger model) of "the onset does not move to less data
    as models grow". A rise shrinks with more data, so a larger model's onset is surely below a smaller
    one's only where it was run, and did not rise, at a size above its own onset and at or below the
    smaller one's; otherwise (an unbalanced grid: it was not run there) the pair is undecided."""
    ordered = list(onsets)
    bad, unknown = [], []
    for i, small in enumerate(ordered):
        if onsets[small] is None:
            continue
        for large in ordered[i + 1:]:
            own = onsets[large]
            if own is not None and own >= onsets[small]:
                continue
            floor = -np.inf if own is None else own
            if any(floor < s <= onsets[small] and v <= tol for s, v in by_model[large].items()):
                bad.append((small, large))
            else:
                unknown.append((small, large))
    return bad, unknown


def _length_evidence(runs: pd.DataFrame, over: list[dict], models: list[str], tol: float,
                     metric: str | None) -> dict | None:
    rows = [r for r in over if r.get("rise_vs_shorter") is not None and np.isfinite(r["rise_vs_shorter"])]
    if not rows:
        return None
    longest = max(r["iters"] for r in rows)
    rows = [r for r in rows if r["iters"] == longest]
    d_max = float(runs["data_size"].max())
    flagged = [r for r in rows if r["rise_vs_shorter"] > tol]
    small = [r for r in flagged if r["data_size"] < d_max]
    full = [r for r in flagged if r["data_size"] >= d_max]
    rank = {m: i for i, m in enumerate(models)}
    by_size: dict[float, dict[str, float]] = {}
    by_model: dict[str, dict[float, float]] = {}
    for r in sorted(rows, key=lambda r: (r["data_size"], rank.get(r["model"], 0))):
        by_size.setdefault(float(r["data_size"]), {})[r["model"]] = float(r["rise_vs_shorter"])
    for r in sorted(rows, key=lambda r: (rank.get(r["model"], 0), r["data_size"])):
        by_model.setdefault(r["model"], {})[float(r["data_size"])] = float(r["rise_vs_shorter"])
    # The onset is read on the data smaller than the largest size (a rise there is checked on its own).
    below = {m: {s: v for s, v in got.items() if s < d_max} for m, got in by_model.items()}
    onsets = _onsets({m: g for m, g in below.items() if g}, [m for m in models if below.get(m)], tol)
    bad, unknown = _onset_order({m: below[m] for m in onsets}, onsets, tol)
    # "Where present": the paper sees the downstream metric fall with the rise for the larger models, while
    # fine-tuning recovers the smaller models' rises; so the check is on the larger half (by size) of the
    # models with a rise on smaller data, the largest included.
    rising = [m for m in onsets if onsets[m] is not None]
    larger = set(rising[len(rising) // 2:])
    fell_by = {}
    if metric:
        for r in small:
            x = _metric_fell(runs, r, metric)
            if x is not None:
                fell_by[(r["model"], float(r["data_size"]))] = x
    fell_large = [x for (m, _), x in fell_by.items() if m in larger]
    checks = [bool(small), not full, not bad]
    shorter = sorted({r["shorter_iters"] for r in rows})
    parts = []
    for size, got in by_size.items():
        items = ", ".join(f"{m} {v:+.4f}{'*' if v > tol else ''}" for m, v in got.items())
        parts.append(f"{int(size):,} images: {items}")
    onset_words = ", ".join(f"{m} {f'{int(s):,}' if s is not None else f'none (from {int(min(below[m])):,})'}"
                            for m, s in onsets.items())
    if not small:
        trend = f"No rise above the tolerance on data smaller than {int(d_max):,} images"
    else:
        trend = (f"{len(small)} rise(s) on data smaller than {int(d_max):,} images; the largest size at which "
                 f"each model still rises (its onset): {onset_words} ("
                 + ("moves to more data as models grow" if not bad else "moves to less data for "
                    + ", ".join(f"{b} after {a}" for a, b in bad))
                 + (f"; undecided for {', '.join(sorted({b for _, b in unknown}))}, not run at the smaller "
                    "models' onset" if unknown and not bad else "") + ")")
    text = (f"Length rule, held-out loss at {int(longest):,} it minus the best shorter length "
            f"({', '.join(f'{int(s):,}' for s in shorter)} it; * = above the tolerance {tol:.2g}): "
            + "; ".join(parts) + ". " + trend
            + (f"; {len(full)} on the largest size." if full else "; none on the largest size."))
    if metric and fell_large:
        checks.append(sum(fell_large) > len(fell_large) / 2)
        text += (f" {metric} fell with the rise in {sum(fell_large)} of {len(fell_large)} flagged setting(s) of "
                 f"the larger models ({', '.join(m for m in rising if m in larger)}; target: more than half)"
                 f", in {sum(fell_by.values())} of {len(fell_by)} over all models.")
    numbers = {"iters": longest, "rises_by_size": {f"{s:g}": v for s, v in by_size.items()},
               "flagged_small": len(small), "flagged_full": len(full),
               "onset_by_model": onsets, "onset_moves_to_more_data": not bad,
               "onset_violations": [list(p) for p in bad], "onset_undecided": [list(p) for p in unknown],
               "metric": metric, "metric_fell": int(sum(fell_by.values())), "metric_compared": len(fell_by),
               "metric_models": [m for m in rising if m in larger], "metric_fell_larger": int(sum(fell_large)),
               "metric_compared_larger": len(fell_large)}
    return {"presence": [bool(small)], "checks": checks, "text": text, "numbers": numbers}


def overfitting_finding(runs: pd.DataFrame, curves: pd.DataFrame, models: list[str], tol: float,
                        over: list[dict] | None = None, metric: str | None = None, primary=None) -> dict:
    runs = _on_primary(runs, primary)
    over = [r for r in (over or []) if primary is None or r.get("series", primary) == primary]
    parts = [e for e in (_length_evidence(runs, over, models, tol, metric) if over else None,
                         _curve_evidence(runs, curves, models, tol)) if e is not None]
    if not parts:
        return {"finding": OVERFIT, "verdict": "n/a", "text": "needs at least two training lengths of the same "
                "settings, or validation curves and training-probe losses (a study directory)"}
    checks = [c for p in parts for c in p["checks"]]
    verdict = "yes" if all(checks) else "partly" if any(c for p in parts for c in p["presence"]) else "no"
    numbers = {k: v for p in parts for k, v in p["numbers"].items()}
    return {"finding": OVERFIT, "verdict": verdict, "text": " ".join(p["text"] for p in parts),
            "numbers": numbers}


def data_gain_finding(gain_rows: list[dict], models: list[str], primary=None, name_it: bool = True) -> dict:
    name = "more data helps larger models more"
    rows = [r for r in gain_rows if r.get("gain") is not None and np.isfinite(r["gain"])
            and (primary is None or r.get("series", primary) == primary)]
    if not rows:
        why = next((r["message"] for r in gain_rows if r.get("message")), "no data-gain rows")
        return {"finding": name, "verdict": "n/a", "text": why}
    rank = {m: i for i, m in enumerate(models)}

    def at(iters):
        return sorted((r for r in rows if r["iters"] == iters), key=lambda r: rank.get(r["model"], 0))

    longest = max(r["iters"] for r in rows)
    top = at(longest)
    by_model = {r["model"]: r["gain"] for r in top}
    gains = list(by_model.values())
    increasing = len(gains) > 1 and all(b > a for a, b in zip(gains, gains[1:]))
    verdict = "yes" if increasing else "partly" if len(gains) > 1 and gains[-1] > gains[0] else "no"
    shared = top[0].get("shared_sizes") or [v for v in (top[0].get("d_min"), top[0].get("d_max")) if v is not None]
    where = f" of {primary}" if primary and name_it else ""
    on = (f", on the data sizes every compared model has ({', '.join(f'{int(s):,}' for s in shared)} images"
          f"{where})" if shared else "")
    text = (f"At {int(longest):,} it{on}, held-out loss at the smallest minus at the "
            "largest: " + ", ".join(f"{m} {g:+.4f}" for m, g in by_model.items())
            + f" ({'increases' if increasing else 'does not increase'} with model size).")
    left = [r["model"] for r in gain_rows if r["iters"] == longest and r.get("message")
            and (primary is None or r.get("series", primary) == primary)]
    if left:
        text += f" Not compared (fewer than 2 sizes here): {', '.join(left)}."
    for iters in sorted({r["iters"] for r in rows if r["iters"] < longest}, reverse=True):
        g = at(iters)
        on = ", ".join(f"{int(s):,}" for s in g[0].get("shared_sizes") or [])
        text += (f" At {int(iters):,} it{f' (on {on})' if on else ''}: "
                 + ", ".join(f"{r['model']} {r['gain']:+.4f}" for r in g) + ".")
    return {"finding": name, "verdict": verdict, "text": text,
            "numbers": {"iters": longest, "gain_by_model": by_model, "shared_sizes": shared, "series": primary}}


def _correlation_grade(rho: float, ci_high: float) -> str:
    """yes / partly / no for one correlation: strong (<= target) and significant (interval below 0)."""
    strong = rho <= SPEARMAN_TARGET
    if not np.isfinite(ci_high):  # no interval (too few runs to resample): the point decides
        return "yes" if strong else "no"
    significant = ci_high < 0
    return "yes" if strong and significant else "partly" if strong or significant else "no"


def correlation_finding(corr_rows: list[dict], headline_metrics: list[str] | None = None,
                        identical: dict[str, list[str]] | None = None) -> dict:
    """`identical`: metric -> the columns equal to it on every run; those are shown once, under its name."""
    identical = identical or {}
    same = {b for v in identical.values() for b in v}
    corr_rows = [r for r in corr_rows if r.get("metric") not in same]
    rows = [r for r in corr_rows if r.get("group") == "all" and r.get("spearman") is not None]
    if not rows:
        return {"finding": "validation loss predicts downstream accuracy", "verdict": "n/a",
                "text": "no downstream metric to correlate with"}
    # The paper correlates with top-1 accuracy (and mIoU / AP for dense tasks); top-5 and other columns are
    # listed but do not decide the verdict when a headline metric exists. Fine-tuning, where a study has it,
    # is the paper's metric: frozen-feature probes then are other metrics.
    chosen = [r for r in rows if r["metric"] in (headline_metrics or [])]
    headline = chosen or [r for r in rows if r["metric"].endswith(("top1", "miou"))] or rows
    parts, grades, weak = [], [], {}
    for r in headline + [r for r in rows if r not in headline]:
        ci = [float("nan") if v is None else v for v in (r.get("spearman_ci") or [None, None])]
        if r in headline:
            grades.append(_correlation_grade(r["spearman"], ci[1]))
        twin = f" (= {', '.join(identical[r['metric']])}, the same on every run)" if r["metric"] in identical else ""
        part = (f"{r['metric']}{twin}: Spearman {r['spearman']:+.2f} (95% CI {ci[0]:+.2f} to {ci[1]:+.2f}), "
                f"Pearson {r['pearson']:+.2f}, n={r['n']}")
        within = [w for w in corr_rows if w["metric"] == r["metric"] and w["group"] != "all"
                  and w.get("spearman") is not None]
        w = weakest(within) if len(within) >= 2 else None
        if w is not None:
            weak[r["metric"]] = w["group"]
            part += ("; per model " + ", ".join(f"{x['group']} {x['spearman']:+.2f}" for x in within)
                     + f", weakest ({weakest_words(w)}) for {w['group']}")
        parts.append(part)
    verdict = "yes" if all(g == "yes" for g in grades) else "no" if all(g == "no" for g in grades) else "partly"
    return {"finding": "validation loss predicts downstream accuracy", "verdict": verdict,
            "text": "; ".join(parts) + f" (target: Spearman <= {SPEARMAN_TARGET:g} over all runs, with its 95% "
            "interval below 0, for " + ", ".join(r["metric"] for r in headline) + ").",
            "numbers": {r["metric"]: r["spearman"] for r in headline},
            "other_metrics": {r["metric"]: r["spearman"] for r in rows if r not in headline},
            "weakest_model": weak}


def paper_findings(res: dict, runs: pd.DataFrame, curves: pd.DataFrame) -> list[dict]:
    """The three checks, in the paper's order."""
    models = [m["name"] for m in res["models"]]  # ordered by parameter count
    tol = res["config"]["tolerance"]
    primary = res.get("primary_dataset")
    return [overfitting_finding(runs, curves, models, tol, res.get("overfitting"),
                                headline_metric(res.get("headline_metrics") or res.get("metrics") or []),
                                primary),
            data_gain_finding(res["data_gain"], models, primary, len(res.get("datasets") or []) > 1),
            correlation_finding(res["correlation"], res.get("headline_metrics"), res.get("identical_metrics"))]
