"""Data-scaling fits and the gain from more data, along each data series (datasets.py).

- Per model, series and length: L(D) = E + B * D^-beta.
- Per series and length, jointly over models: L(N, D) = E + A * N^-alpha + B * D^-beta.

Both are fitted in log space with a Huber loss (delta 1e-3 on log-loss) from a grid of starts, as in
Hoffmann et al. 2022 and the 2024 replication by Besiroglu et al.; the linear parameters of each start
are solved by non-negative least squares, then all starts are refined together (fitting.py). N and D
are divided by their largest value inside the fit; A and B are reported in the original units.
Bounds: E, A, B >= 0 and 0 <= alpha, beta <= 5.

CIs: seeded percentile bootstrap over runs, each resample refined from the point estimate. A
parameter is *identified* by the data only if it is inside its bounds and its CI does not reach a
bound or span half the exponent range; otherwise its value is null (the optimiser's number is kept
under `estimate`, e.g. to draw the curve) and `identification` says why. A term whose coefficient can
be 0 leaves its exponent unidentified; an exponent that can be 0 confounds its term with E.

Extrapolation check: refit without the largest data size and predict it. With n distinct data sizes
and 3 parameters a per-model fit has n - 3 degrees of freedom: with 3 sizes it passes through every
point and R^2 = 1 means nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import fitting as F
from .datasets import ensure_series, shared_sizes
from .results import settings_table

PER_MODEL_PARAMS = ("E", "B", "beta")
JOINT_PARAMS = ("E", "A", "alpha", "B", "beta")
EPS_EXP = 1e-3  # an exponent this close to a bound is at it
EPS_LIN = 1e-4  # a term whose largest value over the data is below this fraction of the loss scale is 0


def _r2(y, pred) -> float | None:
    sst = float(np.sum((y - np.mean(y)) ** 2))
    return None if sst == 0 else 1.0 - float(np.sum((y - pred) ** 2)) / sst


def _percentiles(samples: np.ndarray, level: float) -> np.ndarray | None:
    if len(samples) < 10:
        return None
    return np.percentile(samples, [100 * (1 - level) / 2, 100 * (1 + level) / 2], axis=0)


def _original(theta: np.ndarray, refs: list[float], names) -> dict:
    """Normalised theta [E, C_1, a_1, ...] -> parameters in the original units."""
    vals = [theta[0]]
    for k, ref in enumerate(refs):
        vals += [theta[1 + 2 * k] * ref ** theta[2 + 2 * k], theta[2 + 2 * k]]
    return {n: float(v) for n, v in zip(names, vals)}


def _term_sizes(theta: np.ndarray, xmin: np.ndarray) -> np.ndarray:
    """theta (S, P) -> (S, P) with each coefficient C_k replaced by its term's largest value over the data,
    C_k * min(x_k)^-a_k: a term is 0 over these data when that is, whatever C_k's units."""
    out = np.array(theta, dtype=float, copy=True)
    for k, xm in enumerate(xmin):
        out[:, 1 + 2 * k] = theta[:, 1 + 2 * k] * xm ** -theta[:, 2 + 2 * k]
    return out


def identification(theta: np.ndarray, samples: np.ndarray | None, names, scale: float, xmin,
                   level: float = 0.95, e_max: float = np.inf) -> tuple[dict, str | None]:
    """({name: identified}, why not, in words) from the normalised estimate and its bootstrap samples.
    e_max: the largest sensible E (the lowest observed loss)."""
    point = _term_sizes(theta[None], xmin)[0]
    pct = None if samples is None else _percentiles(_term_sizes(samples, xmin), level)
    why: dict[str, str] = {}
    can_be_zero: set[str] = set()
    for i, name in enumerate(names):
        is_exp = i > 0 and i % 2 == 0
        hi_b, tol = (F.EXP_MAX, EPS_EXP) if is_exp else (np.inf, EPS_LIN * scale)
        lo_ci, hi_ci = (pct[0, i], pct[1, i]) if pct is not None else (point[i], point[i])
        zero = "0" if is_exp or i == 0 else "0 (its term vanishes)"
        if point[i] <= tol or lo_ci <= tol:
            why[name] = f"at its bound {zero}" if point[i] <= tol else f"its CI reaches the bound {zero}"
            can_be_zero.add(name)
        elif point[i] >= hi_b - tol:
            why[name] = f"at its bound {hi_b:g}"
        elif hi_ci >= hi_b - tol:
            why[name] = f"its CI reaches the bound {hi_b:g}"
        elif is_exp and hi_ci - lo_ci >= F.EXP_MAX / 2:
            why[name] = f"its CI spans over half the allowed range 0 to {F.EXP_MAX:g}"
        elif i == 0 and hi_ci - lo_ci >= e_max / 2:
            why[name] = f"its CI spans over half the range 0 to the lowest loss {e_max:.3g}"
    for k in range((len(names) - 1) // 2):
        coef, exp = names[1 + 2 * k], names[2 + 2 * k]
        if coef in can_be_zero:
            why.setdefault(exp, f"its term can vanish ({coef} can be 0)")
        if exp in why:  # B is reported in the original units, B = C * D_max^beta: no beta, no B
            why.setdefault(coef, f"its exponent {exp} is not identified")
        if exp in can_be_zero:
            why.setdefault(names[0], f"confounded with the constant while {exp} can be 0")
    ident = {n: n not in why for n in names}
    msg = None if not why else "not identified by these data: " + "; ".join(f"{n} {w}" for n, w in why.items())
    return ident, msg


def _boot_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1)
    return counts


def _fit_law(cov: list[np.ndarray], y: np.ndarray, names, *, n_boot: int, level: float, seed: int,
             delta: float) -> dict:
    """Fit L = E + sum_k C_k x_k^-a_k; cov: the raw covariates (N, D, ...) of the runs."""
    refs = [float(c.max()) for c in cov]
    x = np.stack([c / r for c, r in zip(cov, refs)], axis=1)
    theta, obj = F.fit(x, y, delta)
    if not (np.all(np.isfinite(theta)) and np.isfinite(obj)):
        raise RuntimeError("the fit did not converge from any start")
    pred = F.predict(theta[None], x)[0]
    out = {"estimate": _original(theta, refs, names), "r2": _r2(y, pred), "n_boot": n_boot, "n_boot_valid": 0,
           "ci": None}
    counts = _boot_counts(len(y), n_boot, seed)
    # A resample needs 3 distinct values of every covariate to identify its curve.
    ok = np.all([[len(np.unique(c[w > 0])) >= 3 for c in cov] for w in counts], axis=1) if n_boot else []
    tb = None
    if n_boot and np.any(ok):
        tb, _ = F.refine(np.repeat(theta[None], int(np.sum(ok)), axis=0), x, y, counts[ok], delta)
        tb = tb[np.all(np.isfinite(tb), axis=1)]
        out["n_boot_valid"] = int(len(tb))
        orig = np.array([list(_original(t, refs, names).values()) for t in tb]) if len(tb) else tb
        opct = _percentiles(orig, level)
        out["ci"] = None if opct is None else {n: [float(opct[0, i]), float(opct[1, i])]
                                                for i, n in enumerate(names)}
    if tb is not None and len(tb) < 10:
        tb = None
    ident, why = identification(theta, tb, names, float(np.median(y)), x.min(axis=0), level, float(np.min(y)))
    out.update({n: (out["estimate"][n] if ident[n] else None) for n in names})
    out["identified"], out["identification"] = ident, why
    if tb is None and n_boot:
        out["identification"] = ((why + "; ") if why else "") + (
            f"no CI: only {out['n_boot_valid']} usable resamples")
    out["_theta"], out["_x"], out["_refs"] = theta, x, refs
    return out


def _clean(out: dict) -> dict:
    for k in ("_theta", "_x", "_refs"):
        out.pop(k, None)
    return out


# --- per model: L(D) = E + B * D^-beta --------------------------------------------------------------

def fit_data_law(d, loss, *, n_boot: int = 200, level: float = 0.95, seed: int = 0,
                 delta: float = F.HUBER_DELTA) -> dict:
    """Fit L(D) = E + B * D^-beta to runs (d, loss): params, CIs, identification, R^2, holdout, message."""
    d, y = np.asarray(d, dtype=float), np.asarray(loss, dtype=float)
    sizes = np.unique(d)
    # dof counts distinct data sizes (seeds of one size do not identify the curve's shape).
    out: dict = {"n_points": int(len(d)), "n_sizes": int(len(sizes)), "dof": int(len(sizes)) - 3,
                 **{k: None for k in PER_MODEL_PARAMS}, "r2": None, "ci": None, "ci_level": level,
                 "n_boot": n_boot, "n_boot_valid": 0, "estimate": None, "identified": None,
                 "identification": None, "holdout": None, "message": None, "note": None}
    if len(sizes) < 3:
        out["message"] = f"{len(sizes)} data size(s); L(D) has 3 parameters and needs at least 3 sizes"
        return out
    if np.any(y <= 0):
        out["message"] = "non-positive validation loss; the fit works on log-loss"
        return out
    try:
        res = _fit_law([d], y, PER_MODEL_PARAMS, n_boot=n_boot, level=level, seed=seed, delta=delta)
    except RuntimeError as exc:
        out["message"] = str(exc)
        return out
    pred = F.predict(res["_theta"][None], res["_x"])[0]
    out.update(_clean(res))
    if float(pred.max() - pred.min()) < 1e-6:
        out["note"] = "the fitted curve is flat: the loss does not fall with more data here; beta is undetermined"
    elif len(sizes) == 3 and len(d) == 3:
        out["note"] = ("3 data sizes for 3 parameters: the curve passes through every point; R^2 is not evidence "
                       "and a bootstrap CI would only repeat the point (none given)")
        out["ci"] = None
    elif len(sizes) == 3:
        out["note"] = ("3 data sizes for 3 parameters: the curve passes through every size's mean; R^2 and the "
                       "CIs reflect the seeds' spread only")
    elif len(sizes) == 4:
        out["note"] = "4 data sizes for 3 parameters: barely identified, read the CIs"
    out["holdout"] = _holdout_d(d, y, delta)
    return out


def _holdout_d(d, y, delta) -> dict:
    top = d.max()
    keep = d < top
    if len(np.unique(d[keep])) < 3:
        return {"held_out_size": float(top), "message": "fewer than 3 data sizes left after holding out the "
                "largest; no extrapolation check"}
    ref = float(d[keep].max())
    theta, _ = F.fit((d[keep] / ref)[:, None], y[keep], delta)
    if not np.all(np.isfinite(theta)):
        return {"held_out_size": float(top), "message": "the refit without the largest size did not converge"}
    observed = float(np.mean(y[~keep]))
    predicted = float(F.predict(theta[None], np.array([[top / ref]]))[0, 0])
    return {"held_out_size": float(top), "predicted": predicted, "observed": observed,
            "error": predicted - observed, "rel_error": (predicted - observed) / observed, "message": None}


def _fit_series(runs: pd.DataFrame, primary=None) -> list[str]:
    """The primary series (default: the one with the most runs) and every other series with at least 3
    data sizes (a series of 1 or 2 sizes, e.g. a second dataset of one size, has no law to fit)."""
    n = runs.groupby("series")["data_size"].nunique()
    counts = runs["series"].value_counts()
    primary = primary if primary in n.index else sorted(counts.index, key=lambda s: (-counts[s], str(s)))[0]
    return [primary] + sorted((s for s in n.index if n[s] >= 3 and s != primary), key=str)


def per_model_fits(runs: pd.DataFrame, primary=None, **kw) -> list[dict]:
    runs = ensure_series(runs)
    out = []
    order = runs.groupby("model")["params"].median().sort_values()
    for series in _fit_series(runs, primary):
        for model in order.index:
            mine = runs[(runs["model"] == model) & (runs["series"] == series)]
            for iters in sorted(mine["iters"].unique()):
                sub = mine[mine["iters"] == iters]
                out.append({"model": model, "params": float(order[model]), "series": series, "iters": float(iters),
                            **fit_data_law(sub["data_size"], sub["val_loss"], **kw)})
    return out


# --- joint: L(N, D) = E + A * N^-alpha + B * D^-beta ------------------------------------------------

def fit_joint_law(n, d, loss, *, n_boot: int = 200, level: float = 0.95, seed: int = 0,
                  f_scale: float = F.HUBER_DELTA) -> dict:
    """Fit L(N, D) to runs; f_scale is the Huber delta on log-loss residuals (1e-3 = 0.1%)."""
    n, d, y = (np.asarray(v, dtype=float) for v in (n, d, loss))
    out: dict = {"n_points": int(len(y)), "n_models": int(len(np.unique(n))),
                 "n_sizes": int(len(np.unique(d))), **{k: None for k in JOINT_PARAMS}, "r2": None,
                 "ci": None, "ci_level": level, "n_boot": n_boot, "n_boot_valid": 0, "loss": "huber",
                 "f_scale": f_scale, "estimate": None, "identified": None, "identification": None,
                 "holdout": None, "message": None}
    if out["n_models"] < 3 or out["n_sizes"] < 3 or len(y) < 6:
        out["message"] = (f"{out['n_models']} model size(s), {out['n_sizes']} data size(s), {len(y)} run(s): "
                          "the joint fit needs at least 3 of each and 6 runs")
        return out
    if np.any(y <= 0):
        out["message"] = "non-positive validation loss; the joint fit works on log-loss"
        return out
    try:
        out.update(_clean(_fit_law([n, d], y, JOINT_PARAMS, n_boot=n_boot, level=level, seed=seed, delta=f_scale)))
    except RuntimeError as exc:
        out["message"] = str(exc)
        return out
    out["holdout"] = _holdout_nd(n, d, y, f_scale)
    return out


def _holdout_nd(n, d, y, delta) -> dict:
    top = d.max()
    keep = d < top
    if len(np.unique(d[keep])) < 3 or len(np.unique(n[keep])) < 3:
        return {"held_out_size": float(top), "message": "too few data sizes left after holding out the "
                "largest; no extrapolation check"}
    nref, dref = float(n[keep].max()), float(d[keep].max())
    theta, _ = F.fit(np.stack([n[keep] / nref, d[keep] / dref], axis=1), y[keep], delta)
    if not np.all(np.isfinite(theta)):
        return {"held_out_size": float(top), "message": "the refit without the largest size did not converge"}
    pred = F.predict(theta[None], np.stack([n[~keep] / nref, d[~keep] / dref], axis=1))[0]
    err = pred - y[~keep]
    return {"held_out_size": float(top), "n_held_out": int((~keep).sum()), "mean_abs_error": float(np.mean(
            np.abs(err))), "max_abs_error": float(np.max(np.abs(err))),
            "mean_rel_error": float(np.mean(err / y[~keep])), "message": None}


def joint_fits(runs: pd.DataFrame, primary=None, **kw) -> list[dict]:
    runs = ensure_series(runs)
    out = []
    for series in _fit_series(runs, primary):
        mine = runs[runs["series"] == series]
        for iters in sorted(mine["iters"].unique()):
            sub = mine[mine["iters"] == iters]
            out.append({"series": series, "iters": float(iters),
                        **fit_joint_law(sub["params"], sub["data_size"], sub["val_loss"], **kw)})
    return out


# --- gain from more data ----------------------------------------------------------------------------

def data_gain_table(runs: pd.DataFrame, tolerance: float = 0.005) -> pd.DataFrame:
    """Per series, length and model: the gain from more data on the sizes every compared model has.

    gain = val_loss(smallest shared size) - val_loss(largest shared size), so every model's gain at one
    length is over the same range (`d_min`, `d_max`, listed in `shared_sizes`); `own_gain` is over the
    model's own smallest to largest size, for reference only. `last_gain` is the last shared step up in
    data; `still_gains` is true when it lowers val_loss by more than the tolerance. Series and lengths
    where no model has 2 sizes are left out.
    """
    st = settings_table(ensure_series(runs))
    cols = ["model", "params", "series", "iters", "n_sizes", "shared_sizes", "d_min", "d_max", "loss_at_d_min",
            "loss_at_d_max", "gain", "rel_gain", "last_gain", "still_gains", "own_d_min", "own_d_max",
            "own_gain", "message"]
    rows = []
    for (series, iters), g in st.groupby(["series", "iters"], sort=False):
        sizes, compared, left_out = shared_sizes(g)
        if not compared:
            continue
        for model, own in g.groupby("model", sort=False):
            own = own.groupby("data_size")["val_loss"].mean().sort_index()
            row = {"model": model, "params": float(g.loc[g["model"] == model, "params"].iloc[0]), "series": series,
                   "iters": float(iters), "n_sizes": int(len(own)), "shared_sizes": sizes,
                   "own_d_min": float(own.index[0]), "own_d_max": float(own.index[-1]),
                   "own_gain": float(own.iloc[0] - own.iloc[-1]) if len(own) >= 2 else np.nan, "message": None}
            if model in left_out:
                row["message"] = "fewer than 2 data sizes in this series at this length"
            elif len(sizes) < 2:
                row["message"] = (f"the compared models share {len(sizes)} data size(s) here; no common range "
                                  "to compare gains over")
            else:
                lo, hi, prev = own[sizes[0]], own[sizes[-1]], own[sizes[-2]]
                row.update(d_min=sizes[0], d_max=sizes[-1], loss_at_d_min=float(lo), loss_at_d_max=float(hi),
                           gain=float(lo - hi), rel_gain=float((lo - hi) / lo), last_gain=float(prev - hi),
                           still_gains=bool(prev - hi > tolerance))
            rows.append(row)
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["series", "iters", "params", "model"]).reset_index(drop=True)
