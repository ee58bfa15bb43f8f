"""``mimscale analyze INPUT``: argument parsing and dispatch only (pandas and scipy load after parsing).

``add_common_args`` / ``common_kwargs`` are the options ``mimscale report`` shares with this command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="INPUT", help="study directory (with runs/) or results CSV")
    p.add_argument("--out", metavar="DIR", help="output directory (default: STUDY_DIR/<kind> or "
                   "<csv stem>_<kind> beside the CSV)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="loss rise that counts as overfitting (default: 2 x sqrt(2) x the pooled seed SD "
                   "where settings have >= 2 seeds, else 0.2%% of the median held-out loss; 0 flags every rise)")
    p.add_argument("--primary-dataset", metavar="NAME", help="the dataset whose validation set the held-out "
                   "losses are measured on (default: the dataset with the most runs, ties by name)")
    p.add_argument("--same-distribution", action="store_true", help="treat every dataset as more of the "
                   "primary's data (one data axis) instead of its own series")
    p.add_argument("--headline", metavar="METRIC", action="append", default=None,
                   help="an eval_* column that decides whether held-out loss predicts downstream accuracy "
                   "(repeatable; default: a study's fine-tuning top-1, else every top-1 / mIoU column)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default %(default)s)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for correlations")
    p.add_argument("--fit-boot", type=int, default=200, help="bootstrap resamples for scaling fits")


def check_common_args(a: argparse.Namespace) -> None:
    """The numbers of `add_common_args`, one line each (a negative resample count would silently give no
    interval); the bootstrap seed is every command's seed check."""
    from mimscale.config_keys import SEED, at_least_zero, positive

    SEED("--seed", a.seed)
    positive()("--n-boot", a.n_boot)
    positive()("--fit-boot", a.fit_boot)
    if a.tolerance is not None:
        at_least_zero("0 flags every rise")("--tolerance", a.tolerance)


def common_kwargs(a: argparse.Namespace) -> dict:
    """The keyword arguments of `analyze` / `build_report` from the options of `add_common_args` (checked)."""
    check_common_args(a)
    return {"tolerance": a.tolerance, "seed": a.seed, "n_boot": a.n_boot, "fit_boot": a.fit_boot,
            "primary_dataset": a.primary_dataset, "same_distribution": a.same_distribution,
            "headline": a.headline}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mimscale analyze", description="Overfitting, data-scaling fits and val-loss vs downstream "
        "correlations of a study directory or results CSV.",
        epilog="examples:\n  mimscale analyze runs/demo\n  mimscale analyze results.csv --out tables/ --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--json", action="store_true", help="print the analysis as one JSON document")
    return p


def analyze_main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    from mimscale.analysis.pipeline import analyze

    res = analyze(a.input, a.out, **common_kwargs(a))
    for m in res["messages"]:
        print(f"note: {m}", file=sys.stderr)
    if a.json:
        print(json.dumps(res, indent=1, allow_nan=False))
    else:
        print("\n".join(res["summary"]))
        print(f"tables: {Path(res['tables']['results']).parent}")
    return 0
