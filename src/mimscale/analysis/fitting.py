"""Robust power-law fits in log space, vectorised over starts and bootstrap resamples.

The law is L = E + sum_k C_k * x_k^-a_k over K covariates x_k (data size D; model size N and D), each
divided by its largest value so that x_k <= 1. Parameters: theta = [E, C_1, a_1, ..., C_K, a_K] with
E, C_k >= 0 and 0 <= a_k <= EXP_MAX.

The objective is that of Hoffmann et al. 2022 (and of the 2024 replication by Besiroglu et al.): the
Huber loss (delta HUBER_DELTA) of log(predicted) - log(observed), summed over runs with weights
(1 for a fit, bootstrap counts for a resample). It is minimised by a projected Levenberg-Marquardt
iteration on iteratively re-weighted Huber residuals, run on many problems at once as numpy arrays:

- starts: a grid of exponents; for each, E and the C_k are solved by non-negative least squares on
  relative residuals (log residuals to first order), so every start is already the best curve of its
  shape; all starts are refined together for a few iterations, the best few to convergence, and the
  lowest objective wins;
- bootstrap: every resample is refined from the point estimate, all resamples together.

One fit with its starts takes milliseconds, 200 resamples tens of milliseconds.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import optimize

HUBER_DELTA = 1e-3
EXP_MAX = 5.0
MAX_ITER = 150
SCREEN_ITER = 25
KEEP = 3
START_EXPONENTS = (0.05, 0.15, 0.3, 0.5, 0.8, 1.2, 2.0, 3.5)
JOINT_START_EXPONENTS = (0.1, 0.3, 0.6, 1.0, 2.0, 3.5)


def n_params(k: int) -> int:
    return 1 + 2 * k


def bounds(k: int) -> tuple[np.ndarray, np.ndarray]:
    lo = np.zeros(n_params(k))
    hi = np.full(n_params(k), np.inf)
    hi[2::2] = EXP_MAX
    return lo, hi


def predict(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """theta (S, P), x (n, K) -> (S, n)."""
    theta = np.atleast_2d(theta)
    out = np.repeat(theta[:, :1], x.shape[0], axis=1)
    for k in range(x.shape[1]):
        out = out + theta[:, 1 + 2 * k, None] * np.power(x[None, :, k], -theta[:, 2 + 2 * k, None])
    return out


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _objective(theta, x, logy, w, delta):
    f = np.maximum(predict(theta, x), 1e-300)
    return np.sum(w * _huber(np.log(f) - logy, delta), axis=1)


def _jacobian(theta, x, f):
    """d log(f) / d theta: (S, n, P)."""
    cols = [np.ones_like(f)]
    for k in range(x.shape[1]):
        lx = np.log(x[None, :, k])
        p = np.power(x[None, :, k], -theta[:, 2 + 2 * k, None])
        cols += [p, -theta[:, 1 + 2 * k, None] * p * lx]
    return np.stack(cols, axis=2) / f[:, :, None]


def refine(theta0: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray, delta: float = HUBER_DELTA,
           max_iter: int = MAX_ITER) -> tuple[np.ndarray, np.ndarray]:
    """Minimise the weighted log-Huber objective from each row of theta0 (S, P) with weights w (S, n).

    Returns (theta (S, P), objective (S,)). Parameters at a bound whose gradient points outwards are
    held there for the step (projected Levenberg-Marquardt)."""
    theta = np.array(theta0, dtype=float, copy=True)
    s, p = theta.shape
    lo, hi = bounds(x.shape[1])
    theta = np.clip(theta, lo, hi)
    logy = np.log(y)[None, :]
    lam = np.full(s, 1e-3)
    obj = _objective(theta, x, logy, w, delta)
    active = np.ones(s, dtype=bool)
    eye = np.eye(p)
    for _ in range(max_iter):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        th = theta[idx]
        f = np.maximum(predict(th, x), 1e-300)
        r = np.log(f) - logy
        a = np.abs(r)
        ww = w[idx] * np.where(a <= delta, 1.0, delta / np.maximum(a, 1e-300))
        jac = _jacobian(th, x, f)
        jw = jac * ww[:, :, None]
        hess = np.einsum("snp,snq->spq", jw, jac)
        grad = np.einsum("snp,sn->sp", jw, r)
        held = ((th <= lo + 1e-12) & (grad > 0)) | ((th >= hi - 1e-12) & (grad < 0))
        free = ~held
        hess = hess * free[:, :, None] * free[:, None, :]
        grad = grad * free
        diag = np.einsum("spp->sp", hess)
        scale = diag.mean(axis=1, keepdims=True) + 1e-30
        damp = lam[idx, None] * (diag + 1e-9 * scale) + held * scale
        try:
            step = -np.linalg.solve(hess + damp[:, :, None] * eye, grad[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = -grad / (diag + damp)
        cand = np.clip(th + step, lo, hi)
        new = _objective(cand, x, logy, w[idx], delta)
        better = new < obj[idx]
        gain = obj[idx] - new
        theta[idx[better]] = cand[better]
        done = (better & (gain <= 1e-12 * np.maximum(obj[idx], 1e-30))) | (lam[idx] > 1e8)
        obj[idx[better]] = new[better]
        lam[idx] = np.where(better, lam[idx] / 3, lam[idx] * 4)
        active[idx[done]] = False
    return theta, obj


def linear_solve(exponents, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """E, C_k >= 0 for fixed exponents: non-negative least squares on relative residuals (pred - y) / y."""
    cols = [np.ones_like(y)] + [np.power(x[:, k], -a) for k, a in enumerate(exponents)]
    design = np.stack(cols, axis=1) / y[:, None]
    coef, _ = optimize.nnls(design, np.ones_like(y))
    theta = [coef[0]]
    for k, a in enumerate(exponents):
        theta += [coef[1 + k], a]
    return np.array(theta)


def starts(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The grid of starts: one per exponent combination, linear parameters solved for it."""
    grid = START_EXPONENTS if x.shape[1] == 1 else JOINT_START_EXPONENTS
    return np.array([linear_solve(c, x, y) for c in itertools.product(grid, repeat=x.shape[1])])


def fit(x: np.ndarray, y: np.ndarray, delta: float = HUBER_DELTA) -> tuple[np.ndarray, float]:
    """Best fit from the grid of starts: (theta, objective). Every start gets SCREEN_ITER iterations, the
    KEEP best are then refined to convergence."""
    th0 = starts(x, y)
    th, obj = refine(th0, x, y, np.ones((len(th0), len(y))), delta, max_iter=SCREEN_ITER)
    best = np.argsort(np.where(np.isfinite(obj), obj, np.inf))[:KEEP]
    th, obj = refine(th[best], x, y, np.ones((len(best), len(y))), delta)
    i = int(np.argmin(np.where(np.isfinite(obj), obj, np.inf)))
    return th[i], float(obj[i])
