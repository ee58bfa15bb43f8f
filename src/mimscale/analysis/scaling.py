"""Data-scaling fits and the gain from more data.

- Per model and length: L(D) = E + B * D^-beta (scipy.optimize.curve_fit, bounded, several starts).
- Per length, jointly over models: L(N, D) = E + A * N^-alpha + B * D^-beta, fitted to log-loss with a
  robust soft-L1 loss (scipy.optimize.least_squares) from a grid of starts in log-parameter space,
  as in Hoffmann et al. 2022.

N and D are divided by their largest value inside the fit so the optimiser sees numbers near 1;
A and B are reported in the original units. CIs: seeded percentile bootstrap over runs (refit from
the point estimate on each resample). Extrapolation check: refit without the largest data size and
predict it. With n distinct data sizes and 3 parameters a per-model fit has n - 3 degrees of
freedom: with 3 sizes it passes through every point and R^2 = 1 means nothing; with 4 it is barely
identified, so its CIs are wide and should be read as such.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
from scipy import optimize

from .results import settings_table

PER_MODEL_PARAMS = ("E", "B", "beta")
JOINT_PARAMS = ("E", "A", "alpha", "B", "beta")


def _r2(y, pred) -> float | None:
    sst = float(np.sum((y - np.mean(y)) ** 2))
    return None if sst == 0 else 1.0 - float(np.sum((y - pred) ** 2)) / sst


def _ci(samples: list, names, level: float) -> dict:
    if len(samples) < 10:
        return {n: None for n in names}
    arr = np.asarray(samples)
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    return {n: [float(v) for v in np.percentile(arr[:, i], q)] for i, n in enumerate(names)}


# --- per model: L(D) = E + B * D^-beta --------------------------------------------------------------

def _law_d(x, e, b, beta):
    return e + b * np.power(x, -beta)


def _fit_d(x, y, p0s):
    best, err = None, "no start converged"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # covariance warnings: CIs come from the bootstrap instead
        for p0 in p0s:
            try:
                p, _ = optimize.curve_fit(_law_d, x, y, p0=p0, bounds=([0, 0, 0], [np.inf, np.inf, 10]),
                                          maxfev=5000)
            except (RuntimeError, ValueError, optimize.OptimizeWarning) as exc:
                err = str(exc)
                continue
            sse = float(np.sum((_law_d(x, *p) - y) ** 2))
            if np.all(np.isfinite(p)) and (best is None or sse < best[1]):
                best = (p, sse)
    if best is None:
        raise RuntimeError(f"the fit did not converge ({err})")
    return best[0]


def _starts_d(x, y):
    lo = float(np.min(y))
    for e, beta in itertools.product((0.0, 0.5 * lo, 0.95 * lo), (0.1, 0.5, 1.5)):
        b = max(float(np.max(y)) - e, 1e-6) / float(np.max(np.power(x, -beta)))
        yield (e, b, beta)


def fit_data_law(d, loss, *, n_boot: int = 200, level: float = 0.95, seed: int = 0) -> dict:
    """Fit L(D) = E + B * D^-beta to runs (d, loss); a dict with params, CIs, R^2, holdout, message."""
    d, y = np.asarray(d, dtype=float), np.asarray(loss, dtype=float)
    sizes = np.unique(d)
    # dof counts distinct data sizes (seeds of one size do not identify the curve's shape).
    out: dict = {"n_points": int(len(d)), "n_sizes": int(len(sizes)), "dof": int(len(sizes)) - 3,
                 **{k: None for k in PER_MODEL_PARAMS}, "r2": None, "ci": None, "ci_level": level,
                 "n_boot": n_boot, "n_boot_valid": 0, "holdout": None, "message": None, "note": None}
    if len(sizes) < 3:
        out["message"] = f"{len(sizes)} data size(s); L(D) has 3 parameters and needs at least 3 sizes"
        return out
    ref = float(sizes.max())
    try:
        e, b, beta = _fit_d(d / ref, y, _starts_d(d / ref, y))
    except RuntimeError as exc:
        out["message"] = str(exc)
        return out
    pred = _law_d(d / ref, e, b, beta)
    out.update(E=float(e), B=float(b * ref**beta), beta=float(beta), r2=_r2(y, pred))
    if float(pred.max() - pred.min()) < 1e-6:
        out["note"] = "the fitted curve is flat: the loss does not fall with more data here; beta is undetermined"
    elif len(sizes) == 3:
        out["note"] = "3 data sizes for 3 parameters: the curve passes through every point; R^2 is not evidence"
    elif len(sizes) == 4:
        out["note"] = "4 data sizes for 3 parameters: barely identified, read the CIs"
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_boot):
        i = rng.integers(0, len(d), len(d))
        if len(np.unique(d[i])) < 3:
            continue
        try:
            eb, bb, betab = _fit_d(d[i] / ref, y[i], [(e, b, beta)])
        except RuntimeError:
            continue
        samples.append((eb, bb * ref**betab, betab))
    out["n_boot_valid"] = len(samples)
    out["ci"] = _ci(samples, PER_MODEL_PARAMS, level)
    out["holdout"] = _holdout_d(d, y)
    return out


def _holdout_d(d, y) -> dict:
    top = d.max()
    keep = d < top
    if len(np.unique(d[keep])) < 3:
        return {"held_out_size": float(top), "message": "fewer than 3 data sizes left after holding out the "
                "largest; no extrapolation check"}
    ref = float(d[keep].max())
    try:
        p = _fit_d(d[keep] / ref, y[keep], _starts_d(d[keep] / ref, y[keep]))
    except RuntimeError as exc:
        return {"held_out_size": float(top), "message": str(exc)}
    observed = float(np.mean(y[~keep]))
    predicted = float(_law_d(top / ref, *p))
    return {"held_out_size": float(top), "predicted": predicted, "observed": observed,
            "error": predicted - observed, "rel_error": (predicted - observed) / observed, "message": None}


def per_model_fits(runs: pd.DataFrame, **kw) -> list[dict]:
    out = []
    order = runs.groupby("model")["params"].median().sort_values()
    for model in order.index:
        for iters in sorted(runs.loc[runs["model"] == model, "iters"].unique()):
            sub = runs[(runs["model"] == model) & (runs["iters"] == iters)]
            out.append({"model": model, "params": float(order[model]), "iters": float(iters),
                        **fit_data_law(sub["data_size"], sub["val_loss"], **kw)})
    return out


# --- joint: L(N, D) = E + A * N^-alpha + B * D^-beta ------------------------------------------------

def _law_nd(theta, xn, xd):
    le, la, alpha, lb, beta = theta
    return np.exp(le) + np.exp(la) * np.power(xn, -alpha) + np.exp(lb) * np.power(xd, -beta)


def _fit_nd(xn, xd, y, starts, f_scale):
    ly = np.log(y)

    def resid(theta):
        return np.log(_law_nd(theta, xn, xd)) - ly

    def jac(theta):
        # d log(pred) / d theta = (d pred / d theta) / pred; analytic, ~3x faster than finite differences.
        le, la, alpha, lb, beta = theta
        tn, td = np.exp(la) * np.power(xn, -alpha), np.exp(lb) * np.power(xd, -beta)
        cols = [np.full_like(tn, np.exp(le)), tn, -tn * np.log(xn), td, -td * np.log(xd)]
        return np.stack(cols, axis=1) / _law_nd(theta, xn, xd)[:, None]

    lo, hi = [-20, -20, 0, -20, 0], [5, 5, 5, 5, 5]
    best = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for th0 in starts:
            try:
                r = optimize.least_squares(resid, np.clip(th0, lo, hi), jac=jac, loss="soft_l1",
                                           f_scale=f_scale, bounds=(lo, hi), max_nfev=2000)
            except (ValueError, FloatingPointError):
                continue
            if r.status > 0 and np.all(np.isfinite(r.x)) and (best is None or r.cost < best.cost):
                best = r
    if best is None:
        raise RuntimeError("the joint fit did not converge from any start")
    return best.x


def _starts_nd(y):
    """16 starts: floor at half / 90% of the lowest loss, both reducible terms small or large, exponents
    0.2 / 0.7 each (the two terms share a scale start: N and D are both normalised to <= 1)."""
    lo = float(np.min(y))
    for le, lt, alpha, beta in itertools.product((np.log(0.5 * lo), np.log(0.9 * lo)),
                                                 (np.log(0.03 * lo), np.log(0.3 * lo)), (0.2, 0.7), (0.2, 0.7)):
        yield (le, lt, alpha, lt, beta)


def fit_joint_law(n, d, loss, *, n_boot: int = 200, level: float = 0.95, seed: int = 0,
                  f_scale: float = 1e-3) -> dict:
    """Fit L(N, D) to runs; f_scale is the soft-L1 scale on log-loss residuals (1e-3 = 0.1%)."""
    n, d, y = (np.asarray(v, dtype=float) for v in (n, d, loss))
    out: dict = {"n_points": int(len(y)), "n_models": int(len(np.unique(n))),
                 "n_sizes": int(len(np.unique(d))), **{k: None for k in JOINT_PARAMS}, "r2": None,
                 "ci": None, "ci_level": level, "n_boot": n_boot, "n_boot_valid": 0, "loss": "soft_l1",
                 "f_scale": f_scale, "holdout": None, "message": None}
    if out["n_models"] < 3 or out["n_sizes"] < 3 or len(y) < 6:
        out["message"] = (f"{out['n_models']} model size(s), {out['n_sizes']} data size(s), {len(y)} run(s): "
                          "the joint fit needs at least 3 of each and 6 runs")
        return out
    if np.any(y <= 0):
        out["message"] = "non-positive validation loss; the joint fit works on log-loss"
        return out
    nref, dref = float(n.max()), float(d.max())
    try:
        theta = _fit_nd(n / nref, d / dref, y, list(_starts_nd(y)), f_scale)
    except RuntimeError as exc:
        out["message"] = str(exc)
        return out
    out.update(_joint_params(theta, nref, dref))
    out["r2"] = _r2(y, _law_nd(theta, n / nref, d / dref))
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if len(np.unique(n[i])) < 3 or len(np.unique(d[i])) < 3:
            continue
        try:
            tb = _fit_nd(n[i] / nref, d[i] / dref, y[i], [theta], f_scale)
        except RuntimeError:
            continue
        samples.append(tuple(_joint_params(tb, nref, dref).values()))
    out["n_boot_valid"] = len(samples)
    out["ci"] = _ci(samples, JOINT_PARAMS, level)
    out["holdout"] = _holdout_nd(n, d, y, f_scale)
    return out


def _joint_params(theta, nref, dref) -> dict:
    le, la, alpha, lb, beta = (float(v) for v in theta)
    return {"E": np.exp(le), "A": np.exp(la) * nref**alpha, "alpha": alpha, "B": np.exp(lb) * dref**beta,
            "beta": beta}


def _holdout_nd(n, d, y, f_scale) -> dict:
    top = d.max()
    keep = d < top
    if len(np.unique(d[keep])) < 3 or len(np.unique(n[keep])) < 3:
        return {"held_out_size": float(top), "message": "too few data sizes left after holding out the "
                "largest; no extrapolation check"}
    nref, dref = float(n[keep].max()), float(d[keep].max())
    try:
        theta = _fit_nd(n[keep] / nref, d[keep] / dref, y[keep], list(_starts_nd(y[keep])), f_scale)
    except RuntimeError as exc:
        return {"held_out_size": float(top), "message": str(exc)}
    pred = _law_nd(theta, n[~keep] / nref, top / dref)
    err = pred - y[~keep]
    return {"held_out_size": float(top), "n_held_out": int((~keep).sum()), "mean_abs_error": float(np.mean(
            np.abs(err))), "max_abs_error": float(np.max(np.abs(err))),
            "mean_rel_error": float(np.mean(err / y[~keep])), "message": None}


def joint_fits(runs: pd.DataFrame, **kw) -> list[dict]:
    out = []
    for iters in sorted(runs["iters"].unique()):
        sub = runs[runs["iters"] == iters]
        out.append({"iters": float(iters), **fit_joint_law(sub["params"], sub["data_size"], sub["val_loss"], **kw)})
    return out


# --- gain from more data ----------------------------------------------------------------------------

def data_gain_table(runs: pd.DataFrame, tolerance: float = 0.005) -> pd.DataFrame:
    """Per model and length: val_loss(smallest D) - val_loss(largest D) and the last step's gain.

    `still_gains` is true when the step to the largest data size lowers val_loss by more than the
    tolerance (a model that has saturated shows ~0 there even if the total gain is large).
    """
    st = settings_table(runs)
    rows = []
    for (model, iters), g in st.groupby(["model", "iters"], sort=False):
        g = g.sort_values("data_size")
        row = {"model": model, "params": float(g["params"].iloc[0]), "iters": float(iters),
               "n_sizes": int(len(g)), "d_min": float(g["data_size"].iloc[0]),
               "d_max": float(g["data_size"].iloc[-1]), "loss_at_d_min": float(g["val_loss"].iloc[0]),
               "loss_at_d_max": float(g["val_loss"].iloc[-1]), "gain": np.nan, "rel_gain": np.nan,
               "last_gain": np.nan, "still_gains": None}
        if len(g) >= 2:
            row["gain"] = row["loss_at_d_min"] - row["loss_at_d_max"]
            row["rel_gain"] = row["gain"] / row["loss_at_d_min"]
            row["last_gain"] = float(g["val_loss"].iloc[-2] - g["val_loss"].iloc[-1])
            row["still_gains"] = bool(row["last_gain"] > tolerance)
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["iters", "params", "model"]).reset_index(drop=True)
