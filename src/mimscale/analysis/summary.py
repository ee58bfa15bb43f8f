"""Plain-words findings, generated from the analysis result (every number comes from the data)."""

from __future__ import annotations

import math

from scipy import stats

from mimscale.study.cost import human as _human

from .correlation import weakest, weakest_words


def human(n: float) -> str:
    """Parameter and image counts: 38000 -> '38k', 1.24e6 -> '1.24M' (the study's own formatting)."""
    return _human(n, counts=True)


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


def _param(r: dict, name: str, fmt: str = ".2f", with_ci: bool = True) -> str:
    """'beta 0.52 (CI 0.41 to 0.63)', or 'beta not identified' when the data do not identify it."""
    ident = r.get("identified") or {}
    if r.get(name) is None or ident.get(name) is False:
        return f"{name} not identified"
    ci = (r.get("ci") or {}).get(name) if with_ci else None
    return f"{name} {format(r[name], fmt)}{_ci(ci, fmt)}"


def _shown_metrics(res: dict) -> list[str]:
    """The metrics, each column that is identical on every run to an earlier one left out (named with it)."""
    same = {b for v in (res.get("identical_metrics") or {}).values() for b in v}
    return [m for m in res["metrics"] if m not in same]


def _metric_name(res: dict, metric: str) -> str:
    twins = (res.get("identical_metrics") or {}).get(metric)
    return f"{metric} (= {', '.join(twins)}, the same on every run)" if twins else metric


def overview(res: dict) -> str:
    models = ", ".join(f"{m['name']} ({human(m['params'])} params)" for m in res["models"])
    sizes = res["data_sizes"]
    lengths = " and ".join(f"{int(i):,}" for i in res["iters"])
    metrics = ", ".join(_metric_name(res, m) for m in _shown_metrics(res)) or "none"
    out = (f"Analysed {res['n_runs']} runs in {res['n_settings']} settings: {len(res['models'])} model(s) "
           f"[{models}], {len(sizes)} data size(s) from {size(min(sizes))} to {size(max(sizes))}, "
           f"length(s) {lengths} iterations. Downstream metrics: {metrics}.")
    datasets = res.get("datasets") or []
    if len(datasets) > 1:
        cfg = res["config"]
        out += (f" {len(datasets)} datasets: " + "; ".join(
            f"{d['name']} ({d['n_runs']} runs, {', '.join(human(v) for v in d['sizes'])} images; {d['role']})"
            for d in datasets) + f". Primary dataset {res['primary_dataset']}: {cfg['primary_dataset_basis']}"
            + ("" if cfg["primary_dataset_basis"] == "--primary-dataset" else " (--primary-dataset to change)")
            + ".")
    return out


def _where(r: dict, several: bool) -> str:
    ds = f"{r['dataset']} " if several and r.get("dataset") is not None else ""
    return f"{r['model']} at {ds}{size(r['data_size'])}, {int(r['iters']):,} it"


def overfitting(res: dict) -> list[str]:
    rows = res["overfitting"]
    cfg = res["config"]
    tol = cfg["tolerance"]
    basis = f"tolerance {tol:.2g}: {cfg.get('tolerance_basis', 'set by the caller')}"
    several = len(res.get("datasets") or []) > 1
    flagged = [r for r in rows if r["flag"]]
    if flagged:
        items = []
        for r in flagged:
            how = []
            if r.get("rise_vs_shorter") is not None and r["rise_vs_shorter"] > tol:
                how.append(f"{r['rise_vs_shorter']:+.4f} vs {int(r['shorter_iters']):,} it")
            if r.get("curve_rise") is not None and r["curve_rise"] > tol:
                how.append(f"curve ends {r['curve_rise']:+.4f} above its minimum")
            items.append(f"{_where(r, several)} ({', '.join(how)})")
        out = [f"Overfitting (held-out loss rising by more than the {basis}): {len(flagged)} of "
               f"{len(rows)} settings: {_listing(items, 12)}."]
    else:
        out = [f"No setting's held-out loss rose by more than the {basis}, neither with longer training nor "
               "after its minimum."]
    rises = res.get("rises") or []
    if rises:
        items = [f"{_where(r, several)} {r['rise_vs_shorter']:+.4f} vs {int(r['shorter_iters']):,} it"
                 f"{' (flagged)' if r['rise_vs_shorter'] > tol else ''}" for r in rises]
        out.append(f"Every rise of the held-out loss with longer training ({len(rises)}, largest first; the "
                   f"overfitting table lists them all): {_listing(items, 12)}.")
    gaps = [r for r in rows if r.get("gap") is not None]
    if gaps:
        gaps.sort(key=lambda r: r["gap"])
        lo, hi = gaps[0], gaps[-1]
        out.append(f"The train/val gap (held-out minus train-probe loss) ranges from {lo['gap']:.3f} "
                   f"({lo['model']}, {size(lo['data_size'])}, {int(lo['iters']):,} it) to {hi['gap']:.3f} "
                   f"({hi['model']}, {size(hi['data_size'])}, {int(hi['iters']):,} it).")
    return out


def _trend(g: list[dict], tol: float) -> str:
    gains = [r["gain"] for r in g]
    if len(g) >= 2 and max(gains) - min(gains) <= tol:
        return f"; about the same for every model (within {tol:.2g})"
    if len(g) >= 3 and len({r["params"] for r in g}) == len(g):
        rho = stats.spearmanr([r["params"] for r in g], gains).statistic
        return {1.0: "; the gain grows with model size", -1.0: "; the gain shrinks with model size"}.get(
            round(float(rho), 6), "; the gain does not change monotonically with model size")
    if len(g) == 2:
        return "; the larger model gains more" if g[1]["gain"] > g[0]["gain"] else "; the larger model does not gain more"
    return ""


def data_gain(res: dict) -> list[str]:
    all_rows = res["data_gain"]
    rows = [r for r in all_rows if r.get("gain") is not None]
    tol = res["config"]["tolerance"]
    several = len({r.get("series") for r in all_rows}) > 1
    out = []
    for series in sorted({r.get("series") for r in rows}, key=lambda s: (s != res.get("primary_dataset"), str(s))):
        mine = [r for r in rows if r.get("series") == series]
        of = f" of {series}" if several or len(res.get("datasets") or []) > 1 else ""
        for iters in sorted({r["iters"] for r in mine}, reverse=True):
            g = sorted((r for r in mine if r["iters"] == iters), key=lambda r: r["params"])
            parts = ", ".join(f"{r['gain']:+.4f} ({r['model']})" for r in g)
            shared = g[0].get("shared_sizes") or [g[0]["d_min"], g[0]["d_max"]]
            left = [r["model"] for r in all_rows if r.get("series") == series and r["iters"] == iters
                    and r.get("gain") is None]
            skip = f" ({', '.join(left)}: fewer than 2 sizes, not compared)" if left else ""
            out.append(f"At {int(iters):,} iterations, on the data sizes every compared model has{of} "
                       f"({', '.join(human(v) for v in shared)} images){skip}, validation loss at {size(g[0]['d_min'])} "
                       f"minus at {size(g[0]['d_max'])} (positive = more data helps): {parts}{_trend(g, tol)}.")
        lengths = sorted({r["iters"] for r in mine})
        if len(lengths) >= 2:
            short, long_ = lengths[0], lengths[-1]
            both = [(a, b) for a in mine for b in mine if a["model"] == b["model"] and a["iters"] == short
                    and b["iters"] == long_ and a["d_min"] == b["d_min"] and a["d_max"] == b["d_max"]]
            if both:
                both.sort(key=lambda ab: ab[0]["params"])
                parts = ", ".join(f"{b['gain'] - a['gain']:+.4f} ({a['model']})" for a, b in both)
                out.append(f"Training longer ({int(short):,} -> {int(long_):,} iterations) changes that gain{of} "
                           f"by: {parts}.")
        last = [r for r in mine if r["iters"] == lengths[-1] and r.get("still_gains") is not None]
        if last:
            still = [r["model"] for r in last if r["still_gains"]]
            sat = [r["model"] for r in last if not r["still_gains"]]
            out.append(f"At {int(lengths[-1]):,} iterations the last shared step up in data{of} lowers the loss by "
                       f"more than {tol:.2g} for: {', '.join(still) or 'no model'}; saturated: {', '.join(sat) or 'none'}.")
    for d in res.get("datasets") or []:
        if d["series"] == d["name"] and d["name"] != res.get("primary_dataset") and len(d["sizes"]) < 2:
            out.append(f"{d['name']} ({size(d['sizes'][0])}) is its own series with one data size: its runs are "
                       f"not compared as more of {res['primary_dataset']}'s data (--same-distribution to do so).")
    return out


def fits(res: dict) -> list[str]:
    out = []
    per = res["fits"]["per_model"]
    several = len({r.get("series") for r in per}) > 1
    for series in sorted({r.get("series") for r in per}, key=lambda s: (s != res.get("primary_dataset"), str(s))):
        mine = [r for r in per if r.get("series") == series]
        longest = max(r["iters"] for r in mine)
        of = f" on {series}" if several else ""
        items, fails = [], []
        for r in (r for r in mine if r["iters"] == longest):
            if r["message"]:
                fails.append(f"{r['model']}: {r['message']}")
                continue
            hold = r.get("holdout") or {}
            miss = f", holdout error {hold['error']:+.4f}" if hold.get("error") is not None else ""
            nci = " (no CI: 3 sizes for 3 parameters)" if r.get("n_sizes") == 3 and not r.get("ci") else ""
            items.append(f"{r['model']} {_param(r, 'beta')}{nci}, {_param(r, 'E', '.3f', False)}{miss}")
        if items:
            out.append(f"Per-model fits L(D) = E + B*D^-beta{of} at {int(longest):,} iterations (Huber on log-loss): "
                       f"{'; '.join(items)}.")
        if fails:
            out.append(f"Per-model fits not made{of} at {int(longest):,} iterations: {'; '.join(fails)}.")
        why = [f"{r['model']}: {r['identification']}" for r in mine if r["iters"] == longest
               and r.get("identification")]
        if why:
            out.append(f"Not identified{of} at {int(longest):,} iterations: {'; '.join(why)}.")
    for j in res["fits"]["joint"]:
        of = f" on {j.get('series')}" if several else ""
        if j["message"]:
            out.append(f"Joint fit L(N, D){of} at {int(j['iters']):,} iterations not made: {j['message']}.")
            continue
        hold = j.get("holdout") or {}
        miss = (f"; predicting the largest data size from the others misses by {hold['mean_abs_error']:.4f} "
                "on average") if hold.get("mean_abs_error") is not None else ""
        why = f" ({j['identification']})" if j.get("identification") else ""
        out.append(f"Joint fit L(N, D) = E + A*N^-alpha + B*D^-beta{of} at {int(j['iters']):,} iterations: "
                   f"{_param(j, 'alpha')}, {_param(j, 'beta')}, {_param(j, 'E', '.3f', False)}, R^2 "
                   f"{_num(j['r2'], '.3f')}{miss}{why}.")
    return out


def _strength(r: float) -> str:
    a = abs(r)
    return "strong" if a >= 0.7 else "moderate" if a >= 0.4 else "weak"


def correlation(res: dict) -> list[str]:
    out = []
    rows = res["correlation"]
    level = int(round(100 * res["config"]["ci_level"]))
    for metric in _shown_metrics(res):
        allrow = next((r for r in rows if r["metric"] == metric and r["group"] == "all"), None)
        if allrow is None:
            continue
        if allrow["message"] and allrow["spearman"] is None:
            out.append(f"Validation loss vs {_metric_name(res, metric)}: {allrow['message']}.")
            continue
        sign_ok = (allrow["spearman"] < 0) == (allrow["expected_sign"] == "negative")
        ci = allrow["spearman_ci"]
        zero = " (its CI includes 0)" if ci and ci[0] <= 0 <= ci[1] else ""
        sent = (f"Validation loss vs {_metric_name(res, metric)} over all {allrow['n']} runs: Spearman {allrow['spearman']:.2f}"
                f"{_ci(ci)}{zero}, Pearson {allrow['pearson']:.2f}{_ci(allrow['pearson_ci'])}, Kendall "
                f"{allrow['kendall']:.2f} ({level}% bootstrap CIs): a {_strength(allrow['spearman'])} "
                + ("relation in the expected direction (lower loss, better metric)." if sign_ok else
                   "relation in the unexpected direction (lower loss, worse metric)."))
        within = [r for r in rows if r["metric"] == metric and r["group"] != "all" and r["spearman"] is not None]
        if len(within) >= 2:
            weak = weakest(within)
            strong = min(within, key=lambda r: r["spearman"] if r["expected_sign"] == "negative" else -r["spearman"])
            sent += (f" Within a model it is weakest ({weakest_words(weak)}) for {weak['group']} (Spearman "
                     f"{weak['spearman']:.2f}, n={weak['n']}) and strongest for {strong['group']} (Spearman "
                     f"{strong['spearman']:.2f}, n={strong['n']}).")
        out.append(sent)
    return out


def selection(res: dict) -> list[str]:
    out = []
    shown = set(_shown_metrics(res))
    for r in res["selection"]:
        if r["group"] != "all" or r["same"] is None or r["metric"] not in shown:
            continue
        if r["same"]:
            out.append(f"Choosing the run with the lowest validation loss also picks a best run by {r['metric']} "
                       f"({r['by_val_loss']['run']}, {r['by_val_loss']['value']:.4g}).")
        else:
            out.append(f"Choosing by validation loss picks {r['by_val_loss']['run']} "
                       f"({r['metric']} {r['by_val_loss']['value']:.4g}) instead of {r['by_metric']['run']} "
                       f"({r['by_metric']['value']:.4g}): {r['metric_lost']:.4g} of {r['metric']} lost.")
    return out


def prediction(res: dict) -> list[str]:
    out = []
    for f in (res.get("prediction") or {}).get("fits", []):
        if f["message"]:
            out.append(f"Predicting {f['metric']} from held-out loss: {f['message']}.")
            continue
        by = f["loo_mae_by_features"] or {}
        other = "; ".join(f"{k}: {v:.4g}" for k, v in by.items() if k != f["features"])
        lo, hi = f["residual_interval"]
        level = int(round(100 * f["ci_level"]))
        out.append(f"{f['metric']} predicted from {f['features']} (least squares over the {f['n_fit']} runs that "
                   f"have it): leave-one-out mean absolute error {f['loo_mae']:.4g} (largest {f['loo_max_error']:.4g})"
                   + (f", chosen over {other}" if other else "")
                   + (f"; predicted for {f['n_predicted']} run(s) without it, with a {level}% interval of "
                      f"{lo:+.4g} to {hi:+.4g} from the leave-one-out residuals (the predictions table marks "
                      "them)." if f["n_predicted"] else "; every run has it, so nothing is predicted."))
    return out


def summarize(res: dict) -> list[str]:
    """Sentences for the head of the report; each section is skipped if it has nothing to say."""
    out = [overview(res)]
    for part in (overfitting, data_gain, fits, correlation, selection, prediction):
        try:
            out.extend(part(res))
        except (KeyError, TypeError, ValueError) as exc:  # a summary gap must not hide the tables
            out.append(f"({part.__name__} summary unavailable: {exc})")
    return out
