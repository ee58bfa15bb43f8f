"""The demo's seed spread: finished demos beside each other that differ only in the seed are compared, per
finding and per setting; other data, backbones or unfinished demos are left out."""

import json

import pandas as pd
import pytest

from mimscale.demo.seed_spread import seed_siblings, spread_section, spread_tables


def _demo(root, name, seed, data="shapes", val=(0.40, 0.50), top1=(0.45, 0.20), verdict="yes", finished=True):
    d = root / name
    (d / "report" / "tables").mkdir(parents=True)
    (d / "demo.json").write_text(json.dumps({"seed": seed, "data": data, "backbone": "vit", "quick": False}))
    (d / "report" / "tables" / "analysis.json").write_text(json.dumps(
        {"paper_findings": [{"finding": "more data helps larger models more", "verdict": verdict}]}))
    if finished:
        pd.DataFrame({"model": ["m", "m"], "data_size": [100, 1000], "iters": [500, 500], "val_loss": list(val),
                      "eval_finetune_top1": list(top1)}).to_csv(d / "results.csv", index=False)
    return d


def test_seeds_of_one_demo_are_compared_per_setting(tmp_path):
    a = _demo(tmp_path, "demo", 0)
    _demo(tmp_path, "demo-seed1", 1, val=(0.42, 0.50), top1=(0.41, 0.20), verdict="partly")
    _demo(tmp_path, "demo-photos", 1, data="photos")  # another dataset: not a seed of this demo
    _demo(tmp_path, "demo-seed2", 2, finished=False)  # no results yet
    record = json.loads((a / "demo.json").read_text())
    demos = seed_siblings(a, record)
    assert [(s, d.name) for s, d in demos] == [(0, "demo"), (1, "demo-seed1")]
    verdicts, spread = spread_tables(demos, "eval_finetune_top1")
    assert verdicts["more data helps larger models more"].tolist() == ["yes", "partly"]
    small = spread[spread["data_size"] == 100].iloc[0]
    assert small["val_loss_mean"] == pytest.approx(0.41) and small["val_loss_std"] == pytest.approx(0.02 / 2 ** 0.5)
    assert (small["eval_finetune_top1_min"], small["eval_finetune_top1_max"]) == (0.41, 0.45)
    section = spread_section(a, record)["Seed spread"]
    assert "seeds 0, 1" in section and "val_loss median SD 0.0071" in section


def test_one_seed_gives_no_section(tmp_path):
    a = _demo(tmp_path, "demo", 0)
    assert spread_section(a, json.loads((a / "demo.json").read_text())) == {}
