"""Synthetic results with known answers for the analysis and report tests.

- `power_law_frame`: val_loss = E + A*N^-alpha + B*D^-beta (+ noise), optionally with a length effect;
- `planted_overfit_frame`: a grid where longer training lowers val_loss except in planted settings;
- `make_study_dir`: a fake study directory in the study runner's layout, with loss curves (planted
  curve overfitting), summaries, eval files in both formats and reconstruction pictures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

MODELS = {"tiny-s": 38_000, "tiny-m": 225_000, "tiny-l": 1_240_000}
SIZES = (100, 200, 500, 1000)
LENGTHS = (500, 2000)
LAW = {"E": 0.30, "A": 40.0, "alpha": 0.5, "B": 2.0, "beta": 0.5}


def law(n, d, E=LAW["E"], A=LAW["A"], alpha=LAW["alpha"], B=LAW["B"], beta=LAW["beta"]):
    return E + A * np.power(n, -alpha) + B * np.power(d, -beta)


def power_law_frame(sizes=(1e3, 3e3, 1e4, 3e4, 1e5, 3e5), models=MODELS, iters=(1000,), noise=0.002,
                    seed=0, **law_kw) -> pd.DataFrame:
    """One run per (model, size, length); the length has no effect here."""
    rng = np.random.default_rng(seed)
    rows = []
    for it in iters:
        for name, n in models.items():
            for d in sizes:
                rows.append({"model": name, "params": n, "data_size": d, "iters": it,
                             "val_loss": float(law(n, d, **law_kw) + rng.normal(0, noise))})
    return pd.DataFrame(rows)


def planted_overfit_frame(planted=(("tiny-l", 100, 2000), ("tiny-m", 100, 2000), ("tiny-l", 200, 2000)),
                          rise=0.02, seed=0) -> pd.DataFrame:
    """Grid over MODELS x SIZES x LENGTHS; longer training lowers val_loss by 0.01-0.03 except planted
    settings, whose val_loss is `rise` above the shorter length. Two eval metrics track -val_loss."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, n in MODELS.items():
        for d in SIZES:
            short = float(law(n, d))
            for it in LENGTHS:
                if it == LENGTHS[0]:
                    v = short
                elif (name, d, it) in planted:
                    v = short + rise
                else:
                    v = short - rng.uniform(0.01, 0.03)
                acc = 1.2 - 1.4 * v + rng.normal(0, 0.005)
                rows.append({"model": name, "params": n, "data_size": d, "data_fraction": d / max(SIZES),
                             "iters": it, "val_loss": v, "eval_linear_top1": acc,
                             "eval_knn_top1": acc - 0.05 + rng.normal(0, 0.02),
                             "eval_recon_loss": v + rng.normal(0, 0.003)})
    return pd.DataFrame(rows)


def _curve(final, steps, rng, overfit_rise=0.0, start=1.0):
    """Decays from `start` to `final`; with overfit_rise it reaches final - rise at 60% and climbs back."""
    t = steps / steps[-1]
    if overfit_rise:
        low = final - overfit_rise
        down = low + (start - low) * np.exp(-8 * t / 0.6)
        up = low + overfit_rise * np.clip((t - 0.6) / 0.4, 0, 1)
        v = np.where(t <= 0.6, down, up)
    else:
        v = final + (start - final) * np.exp(-8 * t)
        v = v - (v[-1] - final)
    return v + rng.normal(0, 0.0003, len(t)) * (t < 1)


def make_study_dir(root, planted_curve=(("tiny-l", 100, 2000),), rise=0.02, seed=0) -> Path:
    """A study directory like the study runner writes (docs/RESULTS.md); returns its path."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "runs").mkdir(parents=True)
    (root / "study.yaml").write_text(yaml.safe_dump({"name": "synthetic", "models": list(MODELS)}))
    frame = planted_overfit_frame(planted=(), seed=seed)
    for i, r in frame.iterrows():
        run = root / "runs" / f"run{i:03d}"
        (run / "eval").mkdir(parents=True)
        (run / "recon").mkdir()
        key = (r["model"], r["data_size"], r["iters"])
        planted = key in planted_curve
        cfg = {"model": {"name": r["model"]}, "data": {"fraction": r["data_fraction"]},
               "train": {"iters": int(r["iters"]), "batch_size": 64}, "seed": 0}
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
        steps = np.linspace(r["iters"] / 10, r["iters"], 10).astype(int)
        val = _curve(r["val_loss"], steps, rng, rise if planted else 0.0)
        gap = 0.3 * (1000 / r["data_size"]) * (r["params"] / 1e6) ** 0.5 * 0.01
        probe = val - gap * np.linspace(0.2, 1, len(steps))
        with open(run / "metrics.jsonl", "w") as fh:
            for s, v, p in zip(steps, val, probe):
                fh.write(json.dumps({"step": int(s), "split": "train", "name": "loss", "value": float(p) + 0.01,
                                     "time": 0.0}) + "\n")
                fh.write(json.dumps({"step": int(s), "split": "val", "name": "loss", "value": float(v),
                                     "time": 0.0}) + "\n")
                fh.write(json.dumps({"step": int(s), "split": "train_probe", "name": "loss", "value": float(p),
                                     "time": 0.0}) + "\n")
            fh.write('{"step": 7, "split": "val", "name": "loss", "val')  # a run killed mid-write
        summary = {"status": "done", "model": r["model"], "params": int(r["params"]),
                   "data_size": int(r["data_size"]), "data_fraction": r["data_fraction"],
                   "iters": int(r["iters"]), "global_batch": 64,
                   "epochs_equivalent": r["iters"] * 64 / r["data_size"], "final_val_loss": float(val[-1]),
                   "best_val_loss": float(val.min()), "best_val_step": int(steps[val.argmin()]),
                   "final_train_probe_loss": float(probe[-1]), "final_train_loss": float(probe[-1]) + 0.01}
        (run / "summary.json").write_text(json.dumps(summary))
        (run / "eval" / "linear.json").write_text(json.dumps({"metrics": {"top1": r["eval_linear_top1"],
                                                                          "top5": r["eval_linear_top1"] + 0.2}}))
        (run / "eval" / "knn.json").write_text(json.dumps({"name": "top1", "value": r["eval_knn_top1"]}))
        for step in (steps[4], steps[-1]):
            _recon_png(run / "recon" / f"step_{step:07d}.png", rng)
    # An unfinished run: curves but no summary; it must be skipped, not crash the analysis.
    run = root / "runs" / "zz_running"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"step": 10, "split": "val", "name": "loss", "value": 0.9}))
    return root


def _recon_png(path: Path, rng) -> None:
    """A 3-row strip (original / masked / reconstruction) of 4 tiles, like a reconstruction grid."""
    tiles = rng.uniform(0, 255, size=(3, 4, 3)).astype(np.uint8)
    img = np.kron(tiles, np.ones((24, 24, 1), dtype=np.uint8))
    Image.fromarray(img).save(path)
