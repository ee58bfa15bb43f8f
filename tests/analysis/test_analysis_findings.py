"""The paper-findings check on planted grids: each verdict follows the numbers, in both directions."""

import numpy as np
import pandas as pd

from mimscale.analysis.findings import correlation_finding, data_gain_finding, overfitting_finding

MODELS = ["s", "m", "l"]
SIZES = [100, 1000]


def _grid(overfit: bool):
    runs, curves = [], []
    steps = np.arange(0, 2001, 200)
    for mi, m in enumerate(MODELS):
        for d in SIZES:
            run = f"{m}-{d}"
            small = d == SIZES[0]
            # held-out curve: falls, then (planted) flattens for the big model on small data
            val = 0.5 * np.exp(-steps / 500) + 0.4 - 0.01 * mi
            probe = val.copy()
            if small:
                probe = probe - 0.02 * (mi + 1) * steps / 2000  # train probe keeps falling below held-out
                if overfit and m == "l":
                    val = np.where(steps >= 1000, val[steps == 1000][0] + 0.00001 * (steps - 1000), val)
            for s, v, p in zip(steps, val, probe):
                curves += [{"run": run, "step": s, "split": "val", "name": "loss", "value": v},
                           {"run": run, "step": s, "split": "train_probe", "name": "loss", "value": p}]
            runs.append({"run": run, "model": m, "data_size": d, "iters": 2000, "val_loss": val[-1],
                         "train_probe_loss": probe[-1]})
    return pd.DataFrame(runs), pd.DataFrame(curves)


def test_planted_overfitting_is_found():
    runs, curves = _grid(overfit=True)
    f = overfitting_finding(runs, curves, MODELS, 0.005)
    n = f["numbers"]
    assert f["verdict"] == "yes", f["text"]
    assert n["gap_ratio"] >= 3 and n["val_tail_change"] > -0.005 and n["probe_tail_drop"] > 0.005
    assert list(n["gaps_by_model"]) == MODELS and not n["full_pool_rises"]


def test_no_overfitting_is_not_claimed():
    runs, curves = _grid(overfit=False)
    f = overfitting_finding(runs, curves, MODELS, 0.005)
    assert f["verdict"] in ("partly", "no") and "still improving" in f["text"]


def test_data_gain_and_correlation_verdicts():
    rows = [{"model": m, "iters": 2000, "gain": g} for m, g in zip(MODELS, [0.01, 0.03, 0.05])]
    assert data_gain_finding(rows, MODELS)["verdict"] == "yes"
    rows[2]["gain"] = 0.0
    assert data_gain_finding(rows, MODELS)["verdict"] == "no"
    corr = [{"group": "all", "metric": "eval_linear_top1", "spearman": -0.8, "pearson": -0.7, "n": 24,
             "spearman_ci": [-0.9, -0.6]},
            {"group": "all", "metric": "eval_knn_top1", "spearman": -0.3, "pearson": -0.2, "n": 24,
             "spearman_ci": [-0.6, 0.1]}]
    f = correlation_finding(corr)
    assert f["verdict"] == "partly" and "Spearman -0.80" in f["text"]
    assert correlation_finding(corr[:1])["verdict"] == "yes"
    # top-5 is listed but a headline (top-1) metric decides the verdict
    top5 = {"group": "all", "metric": "eval_linear_top5", "spearman": -0.2, "pearson": -0.2, "n": 24,
            "spearman_ci": [-0.5, 0.2]}
    f = correlation_finding([corr[0], top5])
    assert f["verdict"] == "yes" and "eval_linear_top5" in f["text"] and list(f["numbers"]) == ["eval_linear_top1"]


def test_fine_tuning_decides_the_correlation_finding_when_present():
    def row(metric, rho):
        return {"group": "all", "metric": metric, "spearman": rho, "pearson": rho, "n": 24,
                "spearman_ci": [rho - 0.1, rho + 0.1]}

    probes = [row("eval_linear_top1", -0.2), row("eval_knn_top1", -0.1)]
    f = correlation_finding([row("eval_ft_top1", -0.9), *probes], ["eval_ft_top1"])
    assert f["verdict"] == "yes" and list(f["numbers"]) == ["eval_ft_top1"]
    assert set(f["other_metrics"]) == {"eval_linear_top1", "eval_knn_top1"}
    # the other direction: probes that track the loss do not rescue a fine-tuned top-1 that does not
    strong = [row("eval_linear_top1", -0.9), row("eval_knn_top1", -0.95)]
    assert correlation_finding([row("eval_ft_top1", 0.1), *strong], ["eval_ft_top1"])["verdict"] == "no"
    assert correlation_finding([row("eval_ft_top1", 0.1), *strong])["verdict"] == "partly"  # no headline: all top-1


def test_correlation_verdict_needs_strength_and_significance():
    def f(rho, lo, hi):
        return correlation_finding([{"group": "all", "metric": "eval_ft_top1", "spearman": rho, "pearson": rho,
                                     "n": 24, "spearman_ci": [lo, hi]}])["verdict"]

    assert f(-0.75, -0.9, -0.48) == "yes"
    assert f(-0.65, -0.85, -0.30) == "partly"  # significant, a little weaker than the target: not "no"
    assert f(-0.80, -0.95, 0.10) == "partly"  # strong but the interval reaches 0 (few runs)
    assert f(-0.30, -0.60, 0.20) == "no"
    assert f(-0.75, None, None) == "yes"  # no interval: the point decides
