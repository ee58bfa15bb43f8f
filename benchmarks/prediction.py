"""How well held-out loss predicts the downstream metric when only a spanning subset of runs is fine-tuned.

    .venv/bin/python benchmarks/prediction.py                  # the synthetic paper grid, 1 and 2 seeds
    .venv/bin/python benchmarks/prediction.py STUDY_DIR|CSV ... # any results

For each input and downstream top-1 column: the leave-one-out mean absolute error on every run that has it
(``analysis.predict``), then the fit on the runs a study's ``runs: spanning`` eval would have measured (about a
quarter of a model x data x length grid; ``analysis.predict.spanning_rows``) scored on the others: their mean
and largest absolute error. Errors are in the metric's own units (top-1 as a fraction). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mimscale.analysis.predict import predict_metric, spanning_error
from mimscale.analysis.results import clean_runs, eval_columns, load_results

# The synthetic grids are test fixtures: they live beside the analysis tests, not in the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "analysis"))
from paper_grid import paper_grid  # noqa: E402

TOP1_NOISE = 0.004  # the published grid's scatter of top-1 about its loss trend (0.4 points)


def rows(name: str, runs) -> list[str]:
    out = []
    for metric in [m for m in eval_columns(runs) if m.endswith("top1") and runs[m].notna().sum()]:
        loo = predict_metric(runs, metric)[0]
        span = spanning_error(runs, metric)
        fmt = (lambda v: "-" if v is None else f"{v:.4f}")  # noqa: E731
        out.append(f"| {name} | {metric} | {loo['n_fit']} | {fmt(loo['loo_mae'])} | {span['n_fit']} / "
                   f"{span['n_test']} | {span['features'] or '-'} | {fmt(span['mae'])} | {fmt(span['max_error'])} |")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="*", help="study directories or results CSVs (default: the synthetic paper grid)")
    args = p.parse_args(argv)
    print("| input | metric | runs | LOO MAE | spanning fit / predicted | features | MAE on the rest | max error |")
    print("|---|---|---|---|---|---|---|---|")
    if not args.inputs:
        for seeds in (1, 2):
            runs, _ = clean_runs(paper_grid(seeds=seeds, top1_noise=TOP1_NOISE))
            for line in rows(f"paper grid, {seeds} seed(s), top-1 noise {TOP1_NOISE}", runs):
                print(line)
    for path in args.inputs:
        runs, _ = clean_runs(load_results(path)[0])
        for line in rows(path, runs):
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
