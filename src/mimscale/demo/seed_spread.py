"""The demo's seed spread: the same built-in study run with other seeds, side by side.

``mimscale demo --seed N`` writes one directory per seed (``runs/demo``, ``runs/demo-seed1``, ...). When a
demo finishes, ``spread_section`` finds the finished demos beside it that differ from it only in the seed
(their ``demo.json``), and returns a report section: each finding's verdict per seed, and per setting the
held-out loss and the headline accuracy over seeds (mean, SD, range), so a reader sees how much of what the
report shows is seed noise.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from mimscale.report import html as H
from mimscale.rundir import read_json

RECORD = "demo.json"  # in a demo's study directory: what `mimscale demo` ran there, and how long it took
SAME = ("data", "backbone", "quick")  # what must match for two demos to be seeds of one study


def seed_siblings(out: Path, record: dict) -> list[tuple[int, Path]]:
    """(seed, directory) of every finished demo beside ``out`` (``out`` included) that differs only in seed."""
    found = []
    for d in sorted(Path(out).resolve().parent.iterdir()):
        rec = read_json(d / RECORD) if d.is_dir() else None
        if rec and all(rec.get(k) == record.get(k) for k in SAME) and (d / "results.csv").is_file():
            found.append((int(rec["seed"]), d))
    seeds = [s for s, _ in found]
    return [(s, d) for s, d in found if seeds.count(s) == 1 or d == Path(out).resolve()]


def spread_tables(demos: list[tuple[int, Path]], metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(verdicts by seed, per-setting spread of val_loss and ``metric`` over seeds)."""
    verdicts, rows = [], []
    for seed, d in demos:
        res = read_json(d / "report" / "tables" / "analysis.json") or {}
        verdicts.append({"seed": seed, "directory": d.name,
                         **{f["finding"]: f["verdict"] for f in res.get("paper_findings", [])}})
        runs = pd.read_csv(d / "results.csv")
        keep = [c for c in ("model", "data_size", "iters", "val_loss", metric) if c in runs]
        rows.append(runs[keep].assign(seed=seed))
    runs = pd.concat(rows, ignore_index=True)
    values = [c for c in ("val_loss", metric) if c in runs]
    spread = runs.groupby(["model", "data_size", "iters"], sort=False)[values].agg(["mean", "std", "min", "max"])
    spread.columns = [f"{v}_{stat}" for v, stat in spread.columns]
    return pd.DataFrame(verdicts), spread.reset_index()


def spread_section(out: Path, record: dict, metric: str = "eval_finetune_top1") -> dict[str, str]:
    """{title: HTML} for the report, or {} when no other seed of this demo has finished here."""
    demos = seed_siblings(out, record)
    if len(demos) < 2:
        return {}
    verdicts, spread = spread_tables(demos, metric)
    sd = spread.filter(like="_std")
    summary = ", ".join(f"{c.removesuffix('_std')} median SD {sd[c].median():.4f} (max {sd[c].max():.4f})"
                        for c in sd.columns)
    intro = (f"<p>This demo and the same study with other seeds (data generated anew and training seeded with "
             f"the seed), found beside it: seeds {', '.join(str(s) for s, _ in demos)}. Over seeds, per setting: "
             f"{html.escape(summary)}. A verdict that differs between seeds rests on differences of this size."
             "</p>")
    return {"Seed spread": intro + H.table(verdicts) + H.table(spread)}
