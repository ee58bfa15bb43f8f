"""The demo's findings across seeds and datasets, and the README's demo numbers, from demo directories.

    python benchmarks/demo_matrix.py runs/demo runs/demo-seed1 runs/demo-photos runs/demo-photos-seed1 \
        [--write]

Reads each directory's ``demo.json`` (what `mimscale demo` ran there and its wall time) and its report's
``tables/analysis.json`` and ``results.csv``, prints a markdown table (verdict of each finding per demo,
the downstream accuracy ranges, wall time) and, with ``--write``, replaces the text between the
``<!-- demo-numbers -->`` / ``<!-- /demo-numbers -->`` markers in README.md (the first directory, the default
demo, in words, then the table) and between ``<!-- demo-matrix -->`` / ``<!-- /demo-matrix -->`` in BENCHMARKS.md (all of
them). Nothing is typed in: rerun the demos and this script to refresh both.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHORT = {"overfitting on small data": "overfitting", "more data helps larger models more": "data helps larger",
         "validation loss predicts downstream accuracy": "val loss predicts accuracy"}


def load(demo_dir: Path) -> dict:
    record = json.loads((demo_dir / "demo.json").read_text())
    res = json.loads((demo_dir / "report" / "tables" / "analysis.json").read_text())
    runs = pd.read_csv(demo_dir / "results.csv")
    return {"dir": demo_dir, "record": record, "res": res, "runs": runs}


def _span(runs: pd.DataFrame, column: str) -> str:
    if column not in runs or runs[column].isna().all():
        return "-"
    return f"{100 * runs[column].min():.1f}-{100 * runs[column].max():.1f}%"


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(round(seconds % 60)):02d} s"


def matrix(demos: list[dict]) -> str:
    head = ("| demo | " + " | ".join(SHORT.values()) + " | Spearman (fine-tuned top-1) | fine-tuned top-1 | "
            "kNN top-1 | linear top-1 | wall |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for d in demos:
        rec, res, runs = d["record"], d["res"], d["runs"]
        verdicts = {f["finding"]: f["verdict"].upper() for f in res["paper_findings"]}
        corr = next(f for f in res["paper_findings"] if f["finding"] in SHORT and "predicts" in f["finding"])
        rho = ", ".join(f"{v:+.2f}" for v in (corr.get("numbers") or {}).values()) or "-"
        name = f"{rec['backbone']}, {rec['data']}, seed {rec['seed']}"
        lines.append(f"| {name} | " + " | ".join(verdicts.get(k, "-") for k in SHORT) + f" | {rho} | "
                     f"{_span(runs, 'eval_finetune_top1')} | {_span(runs, 'eval_knn_top1')} | "
                     f"{_span(runs, 'eval_linear_top1')} | {_minutes(rec['seconds'])}"
                     f"{'' if rec.get('fresh', True) else ' (resumed: evaluations only)'} |")
    return "\n".join(lines)


def readme_text(d: dict) -> str:
    rec, res, runs = d["record"], d["res"], d["runs"]
    out = [f"On {rec['finished'][:10]}, on a {rec['cpus']}-core machine of this kind, `mimscale demo` "
           f"({rec['backbone']}, {rec['data']}, seed {rec['seed']}) "
           + (f"took {_minutes(rec['seconds'])}" if rec.get("fresh", True) else
              f"evaluated runs pre-trained by an earlier call in {_minutes(rec['seconds'])}") + " and reported "
           f"(fine-tuned top-1 {_span(runs, 'eval_finetune_top1')} over the grid, chance 10%; kNN "
           f"{_span(runs, 'eval_knn_top1')}, linear probe {_span(runs, 'eval_linear_top1')}):", ""]
    for f in res["paper_findings"]:
        out.append(f"- *{f['finding']}*: **{f['verdict'].upper()}**. {f['text']}")
    out += ["", "This paragraph is written by `benchmarks/demo_matrix.py --write` from the demo's own report; "
            "each number is recomputed from the runs, not typed in."]
    return "\n".join(out)


def replace_block(path: Path, tag: str, text: str) -> None:
    doc = path.read_text()
    pattern = re.compile(rf"(<!-- {tag} -->\n).*?(\n<!-- /{tag} -->)", re.S)
    if not pattern.search(doc):
        raise SystemExit(f"{path}: no <!-- {tag} --> ... <!-- /{tag} --> markers")
    path.write_text(pattern.sub(lambda m: m.group(1) + text + m.group(2), doc))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+", type=Path, help="demo directories; the first is the README's")
    p.add_argument("--write", action="store_true", help="update README.md and BENCHMARKS.md")
    a = p.parse_args()
    demos = [load(d) for d in a.dirs]
    table = matrix(demos)
    print(table)
    if a.write:
        readme = readme_text(demos[0])
        if len(demos) > 1:
            readme += ("\n\nThe same demo on another seed, on the real-photo data and on the paper's backbone "
                       "(verdicts, Spearman of held-out loss with fine-tuned top-1, accuracy ranges over the grid, "
                       "wall time on 2 cores):\n\n" + table)
        replace_block(ROOT / "README.md", "demo-numbers", readme)
        replace_block(ROOT / "BENCHMARKS.md", "demo-matrix", table)
        print("updated README.md and BENCHMARKS.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
