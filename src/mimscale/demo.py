"""``mimscale demo``: a data-scaling study on built-in data, end to end, on a laptop CPU.

Pre-trains the built-in demo grid (3 CPU presets x 4 nested data fractions x 2 lengths, each length its own
run and schedule), fine-tunes every run on a labelled pool (the paper's downstream metric) and probes it
(linear probe, kNN), analyses the grid and writes the report. Everything goes through the same commands a
user runs (`study run`, `study results`, `report`), so rerunning resumes where it stopped.

Variants of the one built-in study: ``--seed N`` (the data are generated anew from seed N and training is
seeded with N), ``--data photos`` (crops of real photographs instead of procedural shapes) and
``--backbone swinv2`` (the paper's backbone, its CPU presets). The variant's study definition is written
into the study directory (``demo-study.yaml``) and runs like any study file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib import resources
from pathlib import Path

import yaml

from mimscale.errors import ConfigError
from mimscale.rundir import atomic_write_json, atomic_write_text, read_json
from mimscale.seed_spread import RECORD, spread_section

DATASETS = ("shapes", "photos")
# The built-in study file of each backbone (src/mimscale/configs/studies/): the same grid and evaluations.
BACKBONES = {"vit": "demo.yaml", "swinv2": "demo-swinv2.yaml"}


def builtin_study(quick: bool, backbone: str = "vit") -> Path:
    name = "demo-quick.yaml" if quick else BACKBONES[backbone]
    return Path(str(resources.files("mimscale") / "configs" / "studies" / name))


def variant_source(spec: str, data: str, seed: int) -> str:
    """A built-in source spec (``shapes:size=32,pool=1000,seed=0,...``) for another dataset and seed."""
    kind, _, rest = spec.partition(":")
    if kind not in DATASETS:
        return spec
    opts = [f"seed={seed}" if p.startswith("seed=") else p for p in rest.split(",") if p]
    if f"seed={seed}" not in opts:
        opts.append(f"seed={seed}")
    return f"{data}:" + ",".join(opts)  # the order kept: the spec string is part of a run's identity


def variant_study(doc: dict, data: str, seed: int) -> dict:
    """The built-in study ``doc`` on another dataset / seed: every data source (pre-training, held-out,
    fine-tuning and probe pools) and the training seed follow."""
    doc = json.loads(json.dumps(doc))  # a deep copy of plain YAML data
    base = doc.setdefault("base", {})
    base["data.source"] = variant_source(base["data.source"], data, seed)
    if seed:
        base["seed"] = seed  # seed 0 is the default: left out, so the default demo keeps its run ids
    for e in doc.get("evals") or []:
        for key in ("train_source", "test_source"):
            if key in e:
                e[key] = variant_source(e[key], data, seed)
    if data != "shapes" or seed:
        doc["description"] = f"{doc.get('description', '')} (data: {data}, seed {seed})".strip()
    return doc


def default_out(quick: bool, data: str, seed: int, backbone: str) -> Path:
    name = "demo" + (f"-{backbone}" if backbone != "vit" else "") + (f"-{data}" if data != "shapes" else "")
    name += (f"-seed{seed}" if seed else "") + ("-quick" if quick else "")
    return Path("runs") / name


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mimscale demo",
        description="Run the built-in data-scaling study, fine-tune and probe every run, analyse it and write "
                    "report.html. Rerunning resumes.")
    p.add_argument("--out", help="study directory (default: runs/demo, with -<variant> suffixes)")
    p.add_argument("--quick", action="store_true", help="a tiny grid of the same pipeline (about a minute)")
    p.add_argument("--seed", type=int, default=0,
                   help="data and training seed (default 0): the same study on freshly generated data")
    p.add_argument("--data", default="shapes", choices=DATASETS,
                   help="built-in data: procedural shapes (default) or crops of real photographs")
    p.add_argument("--backbone", default="vit", choices=tuple(BACKBONES),
                   help="ViT CPU presets (default) or Swin V2 CPU presets (the paper's backbone; slower)")
    p.add_argument("--workers", type=int, default=0,
                   help="parallel runs (default: one per CPU core, at most 2); threads are divided")
    return p


def demo_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    from mimscale.report import build_report
    from mimscale.study import load_study, run_state, study_main

    out = Path(args.out) if args.out else default_out(args.quick, args.data, args.seed, args.backbone)
    out.mkdir(parents=True, exist_ok=True)
    doc = yaml.safe_load(builtin_study(args.quick, args.backbone).read_text())
    if args.quick and args.backbone != "vit":
        doc["axes"]["model.name"] = [m.replace("vit-", "swinv2-") for m in doc["axes"]["model.name"]]
    study_file = out / "demo-study.yaml"
    atomic_write_text(study_file, yaml.safe_dump(variant_study(doc, args.data, args.seed), sort_keys=False))
    workers = args.workers or max(1, min(2, os.cpu_count() or 1))
    study = load_study(study_file)
    # A rerun of a finished demo only re-reports: it keeps the recorded time of the demo that did the work.
    previous = read_json(out / RECORD) or {}
    states = [run_state(out, r.id, study.evals) for r in study.runs]
    finished_before = all(st == "done" for st in states)
    t0 = time.time()
    print(f"[demo] 1/3 pre-training, fine-tuning and probing the grid ({args.backbone}, {args.data}, seed "
          f"{args.seed}) in {out} ({workers} workers)", file=sys.stderr, flush=True)
    code = study_main(["run", str(study_file), "--out", str(out), "--workers", str(workers)])
    if code != 0:
        print(f"mimscale demo: error: the study did not finish (exit {code}); rerun the same command to "
              "continue", file=sys.stderr)
        return code
    print("[demo] 2/3 collecting results", file=sys.stderr, flush=True)
    study_main(["results", str(out)])
    print("[demo] 3/3 analysing and writing the report", file=sys.stderr, flush=True)
    record = {"seed": args.seed, "data": args.data, "backbone": args.backbone, "quick": args.quick,
              "workers": workers, "cpus": os.cpu_count(), "machine": platform.machine(),
              "python": platform.python_version(),
              "fresh": all(st == "pending" for st in states)}  # every run trained by this call: a full-demo time
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
