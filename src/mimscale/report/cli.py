"""``mimscale report INPUT``: argument parsing and dispatch only (pandas and matplotlib load after parsing)."""

from __future__ import annotations

import argparse

from mimscale.analysis.cli import add_common_args, common_kwargs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mimscale report", description="Self-contained HTML report (figures, tables, findings) of a "
        "study directory or results CSV.",
        epilog="examples:\n  mimscale report runs/demo\n  mimscale report results.csv --out report/ --seed 1",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--format", default="png", help="figure files: any of png,svg,pdf, comma-separated "
                   "(default png; PNG is always written, the HTML embeds it)")
    p.add_argument("--dpi", type=int, default=100, help="figure resolution in dots per inch (default 100)")
    return p


def report_main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    from mimscale.report.build import build_report

    print(build_report(a.input, a.out, formats=a.format, dpi=a.dpi, **common_kwargs(a)))
    return 0
