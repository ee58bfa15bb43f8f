"""Markdown rows for BENCHMARKS.md, "Finding 1 in the demo": the held-out curve, its minimum and end, the
train/val gap, the fine-tuned top-1 and the CPU seconds of runs made by benchmarks/overfit_probe.sh.

usage: python benchmarks/overfit_table.py OUT_DIR BASELINE_NAME NAME [NAME ...]
(BASELINE_NAME: the short run that "final - baseline final" compares with, as the demo's length rule does)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def _curve(run: Path, split: str) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"], r["value"]) for r in rows if r.get("split") == split and r.get("name") == "loss"]


def _cpu(path: Path) -> str:
    got = dict(re.findall(r"(\w+)=([\d.]+)", path.read_text())) if path.exists() else {}
    if "user_s" not in got:  # not run, or still running
        return "-"
    return f"{float(got['user_s']) + float(got['sys_s']):.0f}"


def row(out: Path, name: str, base_final: float) -> str:
    run = out / name
    val, probe = _curve(run, "val"), _curve(run, "train_probe")
    steps = ", ".join(f"{s}: {v:.4f}" for s, v in val if s > 0)
    best = min(val[1:], key=lambda sv: sv[1])
    final = val[-1][1]
    ft = run / "eval" / "finetune.json"
    top1 = f"{json.loads(ft.read_text())['metrics']['final_top1']:.3f}" if ft.exists() else "-"
    return (f"| {name} | {steps} | {best[1]:.4f} ({best[0]}) | {final:.4f} | {final - best[1]:+.4f} | "
            f"{final - base_final:+.4f} | {probe[-1][1]:.4f} ({final - probe[-1][1]:.4f}) | {top1} | "
            f"{_cpu(out / f'{name}.time')} / {_cpu(out / f'{name}.ft.time')} |")


def main(argv: list[str]) -> None:
    out, base, names = Path(argv[0]), argv[1], argv[2:]
    base_final = _curve(out / base, "val")[-1][1]
    for name in names:
        print(row(out, name, base_final))


if __name__ == "__main__":
    main(sys.argv[1:])
