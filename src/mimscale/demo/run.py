"""``mimscale demo``: a data-scaling study on built-in data, end to end, on a laptop CPU.

Pre-trains the built-in demo grid (3 CPU presets x 4 nested data fractions x 2 lengths, each length its own
run and schedule), fine-tunes every run on a labelled pool (the paper's downstream metric) and probes it
(linear probe, kNN), analyses the grid and writes the report. Everything goes through the same commands a
user runs (`study run`, `study results`, `report`), so rerunning resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import yaml

from mimscale.demo.seed_spread import RECORD, spread_section
from mimscale.demo.variants import builtin_study, default_out, variant_study
from mimscale.errors import ConfigError
from mimscale.rundir import RunState, atomic_write_json, atomic_write_text, read_json


def run_demo(out: str | None = None, quick: bool = False, seed: int = 0, data: str = "shapes",
             backbone: str = "vit", workers: int = 0) -> int:
    """The whole demo into ``out`` (default: runs/demo with -<variant> suffixes); returns the exit code."""
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")
    from mimscale.report.build import build_report
    from mimscale.study.cli import study_main
    from mimscale.study.spec import load_study
    from mimscale.study.store import run_state

    out = Path(out) if out else default_out(quick, data, seed, backbone)
    out.mkdir(parents=True, exist_ok=True)
    doc = yaml.safe_load(builtin_study(quick, backbone).read_text())
    if quick and backbone != "vit":
        doc["axes"]["model.name"] = [m.replace("vit-", "swinv2-") for m in doc["axes"]["model.name"]]
    study_file = out / "demo-study.yaml"
    atomic_write_text(study_file, yaml.safe_dump(variant_study(doc, data, seed), sort_keys=False))
    workers = workers or max(1, min(2, os.cpu_count() or 1))
    study = load_study(study_file)
    # A rerun of a finished demo only re-reports: it keeps the recorded time of the demo that did the work.
    previous = read_json(out / RECORD) or {}
    states = [run_state(out, r.id, r.evals) for r in study.runs]
    finished_before = all(st == RunState.DONE for st in states)
    t0 = time.time()
    print(f"[demo] 1/3 pre-training, fine-tuning and probing the grid ({backbone}, {data}, seed "
          f"{seed}) in {out} ({workers} workers)", file=sys.stderr, flush=True)
    code = study_main(["run", str(study_file), "--out", str(out), "--workers", str(workers)])
    if code != 0:
        print(f"mimscale demo: error: the study did not finish (exit {code}); rerun the same command to "
              "continue", file=sys.stderr)
        return code
    print("[demo] 2/3 collecting results", file=sys.stderr, flush=True)
    study_main(["results", str(out)])
    print("[demo] 3/3 analysing and writing the report", file=sys.stderr, flush=True)
    record = {"seed": seed, "data": data, "backbone": backbone, "quick": quick,
              "workers": workers, "cpus": os.cpu_count(), "machine": platform.machine(),
              "python": platform.python_version(),
              "fresh": all(st == RunState.PENDING for st in states)}  # every run trained by this call: a full-demo time
    atomic_write_json(out / RECORD, record)
    path = build_report(out, out / "report")
    seeds = spread_section(out, record)  # this demo's other seeds beside it, with this report's verdicts
    if seeds:
        path = build_report(out, out / "report", extra_sections=seeds)
    res = json.loads((out / "report" / "tables" / "analysis.json").read_text())
    seconds = time.time() - t0
    if finished_before and "seconds" in previous:  # nothing trained now: keep what the working call recorded
        record.update(seconds=previous["seconds"], finished=previous.get("finished"))
        record.pop("fresh")
        if "fresh" in previous:  # records written before the key existed do not say
            record["fresh"] = previous["fresh"]
    else:
        record.update(seconds=round(seconds, 1), finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    atomic_write_json(out / RECORD, record)
    print(f"\nThe paper's findings on this data ({seconds:.0f} s):")
    for f in res.get("paper_findings", []):
        print(f"- {f['finding']}: {f['verdict'].upper()}. {f['text']}")
    print(f"\nreport: {path.resolve()}")
    return 0
