"""How long `mimscale analyze` takes on results tables shaped like real grids.

    .venv/bin/python benchmarks/analysis.py            # ~1 min on one core

1. the 63-run grid of a large MIM data-scaling study (tests/analysis/paper_grid.py: 5 Swin V2
   sizes, 10/20/50/100% of 1.28M images plus a 14.2M-image second dataset, 3 lengths, unbalanced), with
   the default resamples (2,000 for correlations, 200 for fits): the whole analysis and its parts;
2. a balanced 1,000-run grid (10 models x 10 sizes x 5 lengths x 2 seeds);
3. how the time grows with the number of runs and with the bootstrap resamples.

Times are wall-clock seconds after import (the first call, then the median of --repeats more), the CSV
read included, no tables written. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mimscale.analysis import analyze, load_results
from mimscale.analysis.correlation import correlation_table, selection_table
from mimscale.analysis.datasets import assign_series
from mimscale.analysis.overfitting import overfitting_table, tolerance_for
from mimscale.analysis.results import clean_runs
from mimscale.analysis.scaling import data_gain_table, joint_fits, per_model_fits

# The synthetic grids are test fixtures: they live beside the analysis tests, not in the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "analysis"))
from paper_grid import large_grid, paper_grid  # noqa: E402


def _time(fn, repeats: int) -> tuple[float, float]:
    """(first call, median of `repeats` further calls) in seconds."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    rest = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        rest.append(time.perf_counter() - t0)
    return first, statistics.median(rest) if rest else first


def _csv(df, folder: Path, name: str) -> Path:
    path = folder / f"{name}.csv"
    df.to_csv(path, index=False)
    return path


def parts(path: Path, repeats: int) -> None:
    raw, _ = load_results(path)
    runs, _ = clean_runs(raw)
    runs, info = assign_series(runs)
    tol = tolerance_for(runs)[0]
    steps = {
        "read + clean + series": lambda: assign_series(clean_runs(load_results(path)[0])[0]),
        "overfitting (length rule)": lambda: overfitting_table(runs, None, tol),
        "data gain (shared sizes)": lambda: data_gain_table(runs, tol),
        "correlations (2,000 resamples, 6 groups)": lambda: correlation_table(runs, n_boot=2000),
        "selection": lambda: selection_table(runs),
        "per-model fits L(D) (200 resamples each)": lambda: per_model_fits(runs, info["primary"], n_boot=200),
        "joint fits L(N, D) (200 resamples each)": lambda: joint_fits(runs, info["primary"], n_boot=200),
    }
    print("| part of the 63-run analysis | seconds (median) |\n|---|---|")
    for name, fn in steps.items():
        print(f"| {name} | {_time(fn, repeats)[1]:.3f} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        g63 = _csv(paper_grid(noise=0.0003), folder, "g63")
        first, med = _time(lambda: analyze(g63, write=False), a.repeats)
        print(f"63-run grid, defaults (2,000 + 200 resamples): first call {first:.2f} s, median {med:.2f} s\n")
        parts(g63, a.repeats)
        g1000 = _csv(large_grid(), folder, "g1000")
        first, med = _time(lambda: analyze(g1000, write=False), 1)
        print(f"\n1,000-run grid, defaults: first call {first:.2f} s, median {med:.2f} s\n")
        print("| runs | grid | seconds |\n|---|---|---|")
        grids = [(paper_grid(), "paper grid"), (paper_grid(seeds=2), "paper grid x 2 seeds"),
                 (large_grid(5, 5, 5, 2), "5 x 5 x 5 x 2 seeds"), (large_grid(10, 5, 5, 2), "10 x 5 x 5 x 2 seeds"),
                 (large_grid(), "10 x 10 x 5 x 2 seeds"), (large_grid(seeds=4), "10 x 10 x 5 x 4 seeds")]
        for i, (df, label) in enumerate(grids):
            path = _csv(df, folder, f"grow{i}")
            print(f"| {len(df):,} | {label} | {_time(lambda p=path: analyze(p, write=False), 1)[1]:.2f} |")
        print("\n| 63-run grid: correlation resamples | fit resamples | seconds |\n|---|---|---|")
        for n_boot, fit_boot in ((2000, 0), (2000, 100), (2000, 200), (2000, 400), (2000, 800), (500, 200),
                                 (8000, 200)):
            t = _time(lambda nb=n_boot, fb=fit_boot: analyze(g63, write=False, n_boot=nb, fit_boot=fb), 1)[1]
            print(f"| {n_boot:,} | {fit_boot} | {t:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
