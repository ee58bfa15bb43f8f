"""The demo's findings across seeds, datasets and backbones, from demo directories: README's table, DEMO's details.

    .venv/bin/python benchmarks/demo_matrix.py runs/demo runs/demo-seed1 runs/demo-photos runs/demo-photos-seed1 \
        runs/demo-digits runs/demo-digits-seed1 runs/demo-swinv2 [--write]

Reads each directory's ``demo.json`` (what `mimscale demo` ran there, its wall time and whether that call
trained every run) and its report's ``tables/analysis.json`` and ``results.csv``, and prints a markdown table:
the verdict of each of the paper's findings per demo, the Spearman correlation that decides the third, the
downstream accuracy ranges and the wall time of a full run. With ``--write`` it replaces the text between
markers in three files:

- README.md ``<!-- demo-numbers -->``: the table and one sentence saying how to read it;
- docs/DEMO.md ``<!-- demo-details -->``: each demo's findings, a list item per statement and a table of the
  correlations, every metric shown once (a metric equal to another on every run, e.g. final_top1 and top1
  when the demo evaluates once, is named beside the one shown instead of repeating its numbers);
- BENCHMARKS.md ``<!-- demo-matrix -->``: the table.

A wall time is shown only when the record says the call trained every run (``fresh``): a rerun that only
evaluated runs pre-trained by an earlier call is "(resumed)" in the table and its time is labelled as such in
the details, never presented as the demo's time. Nothing is typed in: rerun the demos and this script.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from pathlib import Path

import pandas as pd

from mimscale.analysis.correlation import weakest, weakest_words
from mimscale.analysis.results import identical_metrics

ROOT = Path(__file__).resolve().parents[1]
SHORT = {"overfitting on small data": "overfitting", "more data helps larger models more": "data helps larger",
         "validation loss predicts downstream accuracy": "val loss predicts accuracy"}
CORRELATION = "validation loss predicts downstream accuracy"
README_SENTENCE = textwrap.fill(
    "Each row is one `mimscale demo` variant on 2 cores: the paper's three findings as its report judges them, "
    "the Spearman correlation of held-out loss with fine-tuned top-1 over the grid, the accuracy ranges over the "
    "grid (chance 10%) and the wall time of a full run (\"(resumed)\": the record is of a call that only "
    "evaluated runs pre-trained earlier); each finding's numbers are in "
    "[docs/DEMO.md](docs/DEMO.md#results-per-demo).", width=110, break_on_hyphens=False)


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


def name(rec: dict) -> str:
    return f"{rec['backbone']}, {rec['data']}, seed {rec['seed']}" + (", quick" if rec.get("quick") else "")


def wall_cell(rec: dict) -> str:
    """The run's wall time only when the call trained every run; a resumed or unknown record says so instead."""
    fresh = rec.get("fresh")
    if fresh is True:
        return _minutes(rec["seconds"])
    return "(resumed)" if fresh is False else "(not recorded)"


def wall_words(rec: dict) -> str:
    fresh = rec.get("fresh")
    if fresh is True:
        return f"a full run (every run trained by the call) took {_minutes(rec['seconds'])}"
    if fresh is False:
        return (f"resumed: this call evaluated runs pre-trained by an earlier call in {_minutes(rec['seconds'])}, "
                "which is not the demo's time")
    return (f"the record ({_minutes(rec['seconds'])}) predates the flag that says whether the call trained "
            "every run, so it is not given as the demo's time")


def same_as(runs: pd.DataFrame, metrics: list[str]) -> dict[str, str]:
    """{dropped metric: metric shown} for metric columns equal on every run (e.g. eval_finetune_final_top1 and
    eval_finetune_top1 when fine-tuning evaluates once, after its last epoch): the analysis' own grouping."""
    groups = identical_metrics(runs, [m for m in metrics if m in runs])
    return {drop: keep for keep, drops in groups.items() for drop in drops}


def matrix(demos: list[dict]) -> str:
    head = ("| demo | " + " | ".join(SHORT.values()) + " | Spearman (fine-tuned top-1) | fine-tuned top-1 | "
            "kNN top-1 | linear top-1 | wall |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for d in demos:
        rec, res, runs = d["record"], d["res"], d["runs"]
        verdicts = {f["finding"]: f["verdict"].upper() for f in res["paper_findings"]}
        corr = next(f for f in res["paper_findings"] if f["finding"] == CORRELATION)
        shown = same_as(runs, list(corr.get("numbers") or {}))
        rho = ", ".join(f"{v:+.2f}" for m, v in (corr.get("numbers") or {}).items() if m not in shown) or "-"
        lines.append(f"| {name(rec)} | " + " | ".join(verdicts.get(k, "-") for k in SHORT) + f" | {rho} | "
                     f"{_span(runs, 'eval_finetune_top1')} | {_span(runs, 'eval_knn_top1')} | "
                     f"{_span(runs, 'eval_linear_top1')} | {wall_cell(rec)} |")
    return "\n".join(lines)


def _split_top(text: str, sep: str) -> list[str]:
    """text split at `sep` outside parentheses (a criterion in parentheses may hold '; ' or '. ')."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i + len(sep.rstrip())].strip())
            start = i = i + len(sep)
            continue
        i += 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def statement_items(text: str) -> list[str]:
    """A finding's text as a markdown list: one item per sentence; a sentence that lists '; '-separated
    parts after a colon (one per data size, say) becomes a head item with the parts nested under it."""
    out = []
    for sentence in _split_top(text, ". "):
        head, colon, rest = sentence.partition(": ") if not sentence.startswith("(") else ("", "", sentence)
        while colon and head.count("(") != head.count(")"):  # the colon was inside parentheses: look further
            more_head, colon, rest = rest.partition(": ")
            head = f"{head}: {more_head}"
        parts = _split_top(rest, "; ") if colon else [sentence]
        if colon and len(parts) > 1:
            out.append(f"- {head}:")
            out += [f"  - {p.rstrip(';')}" for p in parts]
        else:
            out.append(f"- {sentence}")
    return out


def _rho(v) -> str:
    return "n/a" if v is None else f"{v:+.2f}"


def correlation_table(res: dict, runs: pd.DataFrame, finding: dict) -> list[str]:
    rows = [r for r in res.get("correlation") or [] if r.get("spearman") is not None]
    headline = list(finding.get("numbers") or {})
    metrics = list(dict.fromkeys(headline + [r["metric"] for r in rows if r["group"] == "all"]))
    dropped = same_as(runs, metrics)
    lines = ["| metric | Spearman (95% CI) | Pearson | n | per model | weakest per model |", "|---|---|---|---|---|---|"]
    for m in metrics:
        if m in dropped:
            continue
        overall = next((r for r in rows if r["metric"] == m and r["group"] == "all"), None)
        if overall is None:
            continue
        lo, hi = (overall.get("spearman_ci") or [None, None])[:2]
        within = [r for r in rows if r["metric"] == m and r["group"] != "all"]
        w = weakest(within) if len(within) >= 2 else None
        also = [d for d, k in dropped.items() if k == m]
        label = f"**{m}**" if m in headline else m
        label += f" (= {', '.join(also)})" if also else ""
        lines.append(f"| {label} | {_rho(overall['spearman'])} ({_rho(lo)} to {_rho(hi)}) | "
                     f"{_rho(overall.get('pearson'))} | {overall.get('n')} | "
                     + (", ".join(f"{r['group']} {_rho(r['spearman'])}" for r in within) or "-") + " | "
                     + (f"{w['group']} ({weakest_words(w)})" if w else "-") + " |")
    if dropped:
        lines += ["", "Shown once: " + "; ".join(f"{d} equals {k} on every run" for d, k in dropped.items())
                  + " (as when fine-tuning evaluates only after its last epoch)."]
    return lines


def details(d: dict) -> str:
    rec, res, runs = d["record"], d["res"], d["runs"]
    out = [f"### {name(rec)}", "",
           f"Finished {str(rec.get('finished'))[:10]} on a {rec.get('cpus')}-core machine; {wall_words(rec)}. "
           f"Fine-tuned top-1 {_span(runs, 'eval_finetune_top1')} over the grid (chance 10%), kNN "
           f"{_span(runs, 'eval_knn_top1')}, linear probe {_span(runs, 'eval_linear_top1')}."]
    for f in res["paper_findings"]:
        out += ["", f"**{f['finding'][:1].upper() + f['finding'][1:]}: {f['verdict'].upper()}**"]
        if f["finding"] == CORRELATION and res.get("correlation"):
            target = re.search(r"\(target: (.*)\)\.?$", f["text"])
            out += ([f"(target: {target.group(1)})"] if target else []) + [""] + correlation_table(res, runs, f)
        else:
            out += [""] + statement_items(f["text"])
    return "\n".join(out)


def replace_block(path: Path, tag: str, text: str) -> None:
    doc = path.read_text()
    pattern = re.compile(rf"(<!-- {tag} -->\n).*?(<!-- /{tag} -->)", re.S)  # the block may be empty
    if not pattern.search(doc):
        raise SystemExit(f"{path}: no <!-- {tag} --> ... <!-- /{tag} --> markers")
    path.write_text(pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), doc))


def write(demos: list[dict], root: Path = ROOT) -> None:
    """README's table and sentence, DEMO's details, BENCHMARKS' table, each between its markers under root."""
    table = matrix(demos)
    replace_block(root / "README.md", "demo-numbers", table + "\n\n" + README_SENTENCE)
    replace_block(root / "docs" / "DEMO.md", "demo-details", "\n\n".join(details(d) for d in demos))
    replace_block(root / "BENCHMARKS.md", "demo-matrix", table)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+", type=Path, help="demo directories, in the order of the table")
    p.add_argument("--write", action="store_true", help="update README.md, docs/DEMO.md and BENCHMARKS.md")
    a = p.parse_args()
    demos = [load(d) for d in a.dirs]
    print(matrix(demos))
    if a.write:
        write(demos)
        print("updated README.md, docs/DEMO.md and BENCHMARKS.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
