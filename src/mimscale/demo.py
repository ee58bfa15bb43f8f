"""``mimscale demo``: a data-scaling study on built-in data, end to end, on a laptop CPU.

Pre-trains the built-in demo grid (3 ViT CPU presets x 4 nested data fractions x 2 lengths, each length
its own run and schedule), probes every run (linear probe on multi-block features, kNN), analyses the
grid and writes the report. Everything goes through the same commands a user runs (`study run`,
`study results`, `report`), so rerunning resumes where it stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from importlib import resources
from pathlib import Path


def builtin_study(quick: bool) -> Path:
    name = "demo-quick.yaml" if quick else "demo.yaml"
    return Path(str(resources.files("mimscale") / "configs" / "studies" / name))


def demo_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mimscale demo",
        description="Run the built-in data-scaling study on procedural shapes, probe every run, analyse it "
                    "and write report.html. Rerunning resumes.")
    parser.add_argument("--out", help="study directory (default: runs/demo, or runs/demo-quick with --quick)")
    parser.add_argument("--quick", action="store_true", help="a tiny grid of the same pipeline (< 2 minutes)")
    parser.add_argument("--workers", type=int, default=0,
                        help="parallel runs (default: one per CPU core, at most 2); threads are divided")
    args = parser.parse_args(argv)
    from mimscale.report import build_report
    from mimscale.study import study_main

    study_file = builtin_study(args.quick)
    out = Path(args.out or ("runs/demo-quick" if args.quick else "runs/demo"))
    workers = args.workers or max(1, min(2, os.cpu_count() or 1))
    t0 = time.time()
    print(f"[demo] 1/3 pre-training and probing the grid of {study_file.name} in {out} ({workers} workers)",
          file=sys.stderr, flush=True)
    code = study_main(["run", str(study_file), "--out", str(out), "--workers", str(workers)])
    if code != 0:
        print(f"mimscale demo: error: the study did not finish (exit {code}); rerun `mimscale demo"
              f"{' --quick' if args.quick else ''}` to continue", file=sys.stderr)
        return code
    print("[demo] 2/3 collecting results", file=sys.stderr, flush=True)
    study_main(["results", str(out)])
    print("[demo] 3/3 analysing and writing the report", file=sys.stderr, flush=True)
    path = build_report(out, out / "report")
    import json

    res = json.loads((out / "report" / "tables" / "analysis.json").read_text())
    print(f"\nThe paper's findings on this data ({time.time() - t0:.0f} s):")
    for f in res.get("paper_findings", []):
        print(f"- {f['finding']}: {f['verdict'].upper()}. {f['text']}")
    print(f"\nreport: {path.resolve()}")
    return 0
