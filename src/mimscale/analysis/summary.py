"""Plain-words findings, generated from the analysis result (every number comes from the data)."""

from __future__ import annotations

import math

from scipy import stats


def human(n: float) -> str:
    """38000 -> '38k', 1.24e6 -> '1.24M' (parameter counts, image counts)."""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:g}"


def size(d: float) -> str:
    return f"{int(round(d)):,} images"


def _num(v, fmt=".3f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _ci(ci, fmt=".2f") -> str:
    return "" if not ci else f" (CI {format(ci[0], fmt)} to {format(ci[1], fmt)})"


def _listing(items: list[str], limit: int = 6) -> str:
    if len(items) > limit:
        return "; ".join(items[:limit]) + f"; and {len(items) - limit} more"
    return "; ".join(items)


def overview(res: dict) -> str:
    models = ", ".join(f"{m['name']} ({human(m['params'])} params)" for m in res["models"])
    sizes = res["data_sizes"]
    lengths = " and ".join(f"{int(i):,}" for i in res["iters"])
    metrics = ", ".join(res["metrics"]) or "none"
    return (f"Analysed {res['n_runs']} runs in {res['n_settings']} settings: {len(res['models'])} model(s) "
            f"[{models}], {len(sizes)} data size(s) from {size(min(sizes))} to {size(max(sizes))}, "
            f"length(s) {lengths} iterations. Downstream metrics: {metrics}.")


def overfitting(res: dict) -> list[str]:
    rows = res["overfitting"]
    tol = res["config"]["tolerance"]
    flagged = [r for r in rows if r["flag"]]
    if flagged:
        items = []
        for r in flagged:
            how = []
            if r.get("rise_vs_shorter") is not None and r["rise_vs_shorter"] > tol:
                how.append(f"{r['rise_vs_shorter']:+.3f} vs {int(r['shorter_iters']):,} it")
            if r.get("curve_rise") is not None and r["curve_rise"] > tol:
                how.append(f"curve ends {r['curve_rise']:+.3f} above its minimum")
            items.append(f"{r['model']} at {size(r['data_size'])}, {int(r['iters']):,} it ({', '.join(how)})")
        out = [f"Overfitting (held-out loss rising by more than the tolerance {tol:g}): {len(flagged)} of "
               f"{len(rows)} settings: {_listing(items)}."]
    else:
        out = [f"No setting's held-out loss rose by more than the tolerance {tol:g}, neither with longer "
               "training nor after its minimum."]
    gaps = [r for r in rows if r.get("gap") is not None]
    if gaps:
        gaps.sort(key=lambda r: r["gap"])
        lo, hi = gaps[0], gaps[-1]
        out.append(f"The train/val gap (held-out minus train-probe loss) ranges from {lo['gap']:.3f} "
                   f"({lo['model']}, {size(lo['data_size'])}, {int(lo['iters']):,} it) to {hi['gap']:.3f} "
                   f"({hi['model']}, {size(hi['data_size'])}, {int(hi['iters']):,} it).")
    return out


def data_gain(res: dict) -> list[str]:
    rows = [r for r in res["data_gain"] if r.get("gain") is not None]
    out = []
    for iters in sorted({r["iters"] for r in rows}, reverse=True):
        g = sorted((r for r in rows if r["iters"] == iters), key=lambda r: r["params"])
        parts = ", ".join(f"{r['gain']:+.3f} ({r['model']})" for r in g)
        dmin, dmax = min(r["d_min"] for r in g), max(r["d_max"] for r in g)
        trend = ""
        tol = res["config"]["tolerance"]
        gains = [r["gain"] for r in g]
        if len(g) >= 2 and max(gains) - min(gains) <= tol:
            trend = f"; about the same for every model (within {tol:g})"
        elif len(g) >= 3 and len({r["params"] for r in g}) == len(g):
            rho = stats.spearmanr([r["params"] for r in g], [r["gain"] for r in g]).statistic
            trend = {1.0: "; the gain grows with model size", -1.0: "; the gain shrinks with model size"}.get(
                round(float(rho), 6), "; the gain does not change monotonically with model size")
        elif len(g) == 2:
            trend = ("; the larger model gains more" if g[1]["gain"] > g[0]["gain"]
                     else "; the larger model does not gain more")
        out.append(f"At {int(iters):,} iterations, validation loss at {size(dmin)} minus at {size(dmax)} "
                   f"(positive = more data helps): {parts}{trend}.")
    lengths = sorted({r["iters"] for r in rows})
    if len(lengths) >= 2:
        short, long_ = lengths[0], lengths[-1]
        both = [(a, b) for a in rows for b in rows if a["model"] == b["model"] and a["iters"] == short
                and b["iters"] == long_ and a["d_min"] == b["d_min"] and a["d_max"] == b["d_max"]]
        if both:
            both.sort(key=lambda ab: ab[0]["params"])
            parts = ", ".join(f"{b['gain'] - a['gain']:+.3f} ({a['model']})" for a, b in both)
            out.append(f"Training longer ({int(short):,} -> {int(long_):,} iterations) changes that gain by: "
                       f"{parts}.")
    longest = lengths[-1] if lengths else None
    if longest is not None:
        last = [r for r in rows if r["iters"] == longest and r.get("still_gains") is not None]
        still = [r["model"] for r in last if r["still_gains"]]
        sat = [r["model"] for r in last if not r["still_gains"]]
        tol = res["config"]["tolerance"]
        if last:
            out.append(f"At {int(longest):,} iterations the last step up in data lowers the loss by more than "
                       f"{tol:g} for: {', '.join(still) or 'no model'}; saturated: {', '.join(sat) or 'none'}.")
    return out


def fits(res: dict) -> list[str]:
    out = []
    per = res["fits"]["per_model"]
    if per:
        longest = max(r["iters"] for r in per)
        items, fails = [], []
        for r in (r for r in per if r["iters"] == longest):
            if r["message"]:
                fails.append(f"{r['model']}: {r['message']}")
                continue
            ci = (r.get("ci") or {}).get("beta")
            hold = r.get("holdout") or {}
            miss = f", holdout error {hold['error']:+.4f}" if hold.get("error") is not None else ""
            items.append(f"{r['model']} beta {r['beta']:.2f}{_ci(ci)}, E {r['E']:.3f}{miss}")
        if items:
            out.append(f"Per-model fits L(D) = E + B*D^-beta at {int(longest):,} iterations: "
                       f"{'; '.join(items)}.")
        if fails:
            out.append(f"Per-model fits not made at {int(longest):,} iterations: {'; '.join(fails)}.")
    for j in res["fits"]["joint"]:
        if j["message"]:
            out.append(f"Joint fit L(N, D) at {int(j['iters']):,} iterations not made: {j['message']}.")
            continue
        ci = j.get("ci") or {}
        hold = j.get("holdout") or {}
        miss = (f"; predicting the largest data size from the others misses by {hold['mean_abs_error']:.4f} "
                "on average") if hold.get("mean_abs_error") is not None else ""
        out.append(f"Joint fit L(N, D) = E + A*N^-alpha + B*D^-beta at {int(j['iters']):,} iterations: "
                   f"alpha {j['alpha']:.2f}{_ci(ci.get('alpha'))}, beta {j['beta']:.2f}{_ci(ci.get('beta'))}, "
                   f"E {j['E']:.3f}, R^2 {_num(j['r2'], '.3f')}{miss}.")
    return out


def _strength(r: float) -> str:
    a = abs(r)
    return "strong" if a >= 0.7 else "moderate" if a >= 0.4 else "weak"


def correlation(res: dict) -> list[str]:
    out = []
    rows = res["correlation"]
    level = int(round(100 * res["config"]["ci_level"]))
    for metric in res["metrics"]:
        allrow = next((r for r in rows if r["metric"] == metric and r["group"] == "all"), None)
        if allrow is None:
            continue
        if allrow["message"] and allrow["spearman"] is None:
            out.append(f"Validation loss vs {metric}: {allrow['message']}.")
            continue
        sign_ok = (allrow["spearman"] < 0) == (allrow["expected_sign"] == "negative")
        ci = allrow["spearman_ci"]
        zero = " (its CI includes 0)" if ci and ci[0] <= 0 <= ci[1] else ""
        sent = (f"Validation loss vs {metric} over all {allrow['n']} runs: Spearman {allrow['spearman']:.2f}"
                f"{_ci(ci)}{zero}, Pearson {allrow['pearson']:.2f}{_ci(allrow['pearson_ci'])}, Kendall "
                f"{allrow['kendall']:.2f} ({level}% bootstrap CIs): a {_strength(allrow['spearman'])} "
                + ("relation in the expected direction (lower loss, better metric)." if sign_ok else
                   "relation in the unexpected direction (lower loss, worse metric)."))
        within = [r for r in rows if r["metric"] == metric and r["group"] != "all" and r["spearman"] is not None]
        if len(within) >= 2:
            signed = -1 if allrow["expected_sign"] == "negative" else 1
            weakest = max(within, key=lambda r: signed * r["spearman"])
            sent += (f" Within a model it is weakest for {weakest['group']} (Spearman {weakest['spearman']:.2f},"
                     f" n={weakest['n']}).")
        out.append(sent)
    return out


def selection(res: dict) -> list[str]:
    out = []
    for r in res["selection"]:
        if r["group"] != "all" or r["same"] is None:
            continue
        if r["same"]:
            out.append(f"Choosing the run with the lowest validation loss also picks a best run by {r['metric']} "
                       f"({r['by_val_loss']['run']}, {r['by_val_loss']['value']:.4g}).")
        else:
            out.append(f"Choosing by validation loss picks {r['by_val_loss']['run']} "
                       f"({r['metric']} {r['by_val_loss']['value']:.4g}) instead of {r['by_metric']['run']} "
                       f"({r['by_metric']['value']:.4g}): {r['metric_lost']:.4g} of {r['metric']} lost.")
    return out


def summarize(res: dict) -> list[str]:
    """Sentences for the head of the report; each section is skipped if it has nothing to say."""
    out = [overview(res)]
    for part in (overfitting, data_gain, fits, correlation, selection):
        try:
            out.extend(part(res))
        except (KeyError, TypeError, ValueError) as exc:  # a summary gap must not hide the tables
            out.append(f"({part.__name__} summary unavailable: {exc})")
    return out
