"""What ``mimscale study plan | run | status`` does with its parsed arguments (``cli.py`` parses; ``results`` is
there too, it belongs to the analysis layer)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mimscale.errors import StudyError, UserError
from mimscale.rundir import STUDY_RUNS, RunState
from mimscale.study import store
from mimscale.study.eval_check import check_study, eval_data_text
from mimscale.study.spec import Study, load_study

PROG = "mimscale study"  # the prefix of the messages below


def _study_dir(study: Study, out: str | None) -> Path:
    return Path(out) if out else study.default_dir()


def open_dir(arg: str) -> tuple[Study, Path]:
    """A study directory, or a study file standing for its directory."""
    path = Path(arg)
    if path.is_file():
        study = load_study(path)
        path = study.default_dir()
    return store.load_study_dir(path), path


def check_all(study: Study, study_dir: Path, world: int = 1):
    """Every check before compute: the evaluations (``eval_check``: their data, and the warnings for suspect
    settings) and the rest (``preflight``: data per fraction against the batch, evaluation data against its task,
    model names, disk space). Returns the eval data, the Preflight (its ``problems``: every problem, one line
    each; its ``warnings``: every warning) and the evaluations' problems alone. Warnings are printed here."""
    from mimscale.study.preflight import Sources, preflight

    sources = Sources()  # each data source built (a folder listed) once for both
    check = check_study(study, sources)
    pre = preflight(study, study_dir, world=world, sources=sources)
    pre.warnings = check.warnings + pre.warnings
    warn(pre.warnings)
    pre.problems = check.problems + pre.problems
    return check.data, pre, check.problems


def warn(warnings: list[str]) -> None:
    """Each suspect-but-valid setting as one line on stderr (results that would mislead; nothing is refused)."""
    for line in warnings:
        print(f"{PROG}: warning: {line}", file=sys.stderr, flush=True)


def refuse(problems: list[str]) -> None:
    """Each problem as a one-line error, the last one raised (exit 2); nothing when there is none."""
    for line in problems[:-1]:
        print(f"{PROG}: error: {line}", file=sys.stderr)
    if problems:
        raise StudyError(problems[-1])


def cmd_plan(args) -> int:
    from mimscale.study import cost, sharing

    study = load_study(args.study)
    out_dir = _study_dir(study, args.out)
    # The plan is printed even when an evaluation cannot run here (the cost of a cluster's grid can be read on
    # a laptop without its data); the problems follow it, and the exit code is 2.
    eval_data, pre, eval_problems = check_all(study, out_dir)
    problems = pre.problems
    costs = [cost.run_cost(r, flops=not args.no_flops) for r in study.runs]
    branches, alone = sharing.plan(study, not args.no_share)
    for r, c in zip(study.runs, costs):  # what each run costs with sharing: a branch only from its departure
        b = branches.get(r.id)
        c["branch"] = {"trunk": b.trunk, "step": b.step} if b else None
        c["not_shared"] = alone.get(r.id)
        share = (1 - b.step / int(r.cfg.train.iters)) if b else 1.0
        c["flops_shared"] = c["flops"] * share if c["flops"] is not None else None
        c.update({f"{k}_images": v for k, v in (pre.images.get(r.id) or {}).items() if k in ("train", "heldout")})
        c["eval_flops"] = _eval_flops(r, c, pre)
    flops = [c["flops"] for c in costs]
    images = [c["images"] for c in costs]
    tot_images = sum(images) if None not in images else None
    tot_flops = sum(flops) if None not in flops and not args.no_flops else None
    tot_flops_shared = sum(c["flops_shared"] for c in costs) if tot_flops is not None else None
    unshared = sum(int(r.cfg.train.iters) for r in study.runs) if all(r.cfg.train.iters > 0 for r in study.runs) else None
    shared = sharing.iterations(study, branches) if unshared is not None else None
    evals_f = [c["eval_flops"] for c in costs]
    tot_eval_flops = sum(evals_f) if None not in evals_f and not args.no_flops else None
    # An existing study directory: the estimate is of what is left (a finished pre-training is never redone).
    left = _left_to_do(study, out_dir)
    left_train = [c["flops_shared"] for r, c in zip(study.runs, costs) if left[r.id]["pretrain"]]
    left_eval = [c["eval_flops"] for r, c in zip(study.runs, costs) if left[r.id]["evals"]]
    train_s = cost.estimate_seconds(sum(left_train) if tot_flops is not None else None, len(left_train))
    eval_s = cost.estimate_seconds(sum(left_eval) if tot_eval_flops is not None else None)
    if args.json:
        doc = {"study": study.name, "study_dir": str(out_dir), "evals": study.evals,
               "tuning": _tuning(study, pre), "eval_data": eval_data_text(study, eval_data),
               "runs": [{"run": r.id, "axes": r.axes, **c,
                         "eval_data": {e["name"]: eval_data.get((r.id, e["name"])) for e in r.evals}}
                        for r, c in zip(study.runs, costs)], "eval_problems": eval_problems,
               "problems": problems, "warnings": pre.warnings,
               "total": {"runs": len(study.runs), "images": tot_images, "flops": tot_flops_shared,
                         "flops_unshared": tot_flops, "train_iterations": shared,
                         "train_iterations_unshared": unshared, "branches": len(branches),
                         "eval_flops": tot_eval_flops, "train_seconds": train_s, "eval_seconds": eval_s,
                         "left": _left_counts(left)},
               "data": _data_lines(study, pre), "disk": pre.disk}
        print(json.dumps(doc, indent=2, default=str))
        refuse(problems)
        return 0
    from mimscale.study.spec import axis_text
    from mimscale.study.status import format_table

    axes = study.axis_keys()
    human = cost.human
    rows = [[r.id, *(axis_text(r.axes[k]) for k in axes), human(c["params"]), str(r.cfg.train.batch_size),
             str(c.get("train_images", "?")), human(c["images"]), human(c["flops"]),
             f"{c['branch']['trunk']}@{c['branch']['step']}" if c["branch"] else "-"]
            for r, c in zip(study.runs, costs)]
    shape = " x ".join(f"{k} ({len(v)})" for k, v in study.axes.items())
    shape += "".join(f" x zip[{', '.join(g)}] ({len(next(iter(g.values())))})" for g in study.zip)
    print(f"study {study.name}: {len(study.runs)} runs = {shape or 'the base config'}; evals: {_evals_text(study)}")
    for name, data in eval_data_text(study, eval_data).items():
        print(f"eval {name} data: {data}")
    for t in _tuning(study, pre):
        steps = (", ".join(f"{s:,} steps per epoch on {n:,} images" for n, s in t["steps_per_epoch"].items())
                 or (f"images // {t['global_batch']} steps per epoch" if t["drop_last"] else ""))
        print(f"eval {t['name']}: global batch {t['global_batch']}, peak LR {t['peak_lr']:.3g} (warmup from "
              f"{t['warmup_lr']:.3g}, floor {t['min_lr']:.3g}; {t['lr_floor_rule']} per layer), {t['precision']}"
              + (f", {steps}" if steps else ""))
    for line in _data_lines(study, pre):
        print(f"data {line['source']}: {line['pool']} training images, {line['heldout']} held out; per fraction: "
              + ", ".join(f"{f:g} -> {n}" for f, n in line["fractions"].items()))
    print(f"study directory: {out_dir}\n")
    print(format_table(["run", *axes, "params", "batch", "subset", "images", "FLOPs", "branches from"], rows))
    print(f"\ntotal: {len(study.runs)} runs, {human(tot_images)} images, {human(tot_flops)} FLOPs "
          f"(training = forward + backward, counted per model); evaluations {human(tot_eval_flops)} FLOPs")
    if branches:
        print(f"shared prefixes: {len(branches)} run(s) branch from a longer one where their schedules are equal: "
              f"{human(shared)} instead of {human(unshared)} training iterations ({unshared / shared:.2f}x), "
              f"{human(tot_flops_shared)} instead of {human(tot_flops)} FLOPs (--no-share: every run in full)")
    else:
        reasons = sorted({why for why in alone.values()})
        print(f"shared prefixes: none ({'; '.join(reasons)})")
    counts = _left_counts(left)
    if counts["runs_started"]:
        print(f"already in {out_dir}: {counts['pretrained']} of {len(study.runs)} runs pre-trained, "
              f"{counts['done']} done; left: {counts['to_pretrain']} pre-training(s), {counts['evaluations']} "
              f"evaluation(s) (a finished pre-training is never redone)")
    if train_s is not None:
        print(f"estimated time{' left' if counts['runs_started'] else ''} on this machine: {cost.duration(train_s + (eval_s or 0))} (pre-training "
              f"{cost.duration(train_s)}, evaluations {cost.duration(eval_s)}; at {cost.ASSUMED_UTILISATION:.0%} of its "
              f"measured matmul speed and {cost.RUN_OVERHEAD_S:g} s per run, one run at a time: a rough guide; "
              f"`study status` gives the ETA from the runs' own speed)")
    if pre.disk is not None:
        print(f"disk: checkpoints need about {human(pre.disk['needed'], 'B')}; {human(pre.disk['free'], 'B')} "
              f"free at {pre.disk['path']}")
    sys.stdout.flush()  # the plan before the problems
    refuse(problems)
    return 0


def _left_to_do(study: Study, study_dir: Path) -> dict[str, dict]:
    """Per run: whether its pre-training is still to do and which evaluations are; everything for a study
    directory that does not exist yet."""
    left = {}
    for r in study.runs:
        d = store.run_dir(study_dir, r.id) if (study_dir / STUDY_RUNS).is_dir() else None
        done = d is not None and store.pretrained(d)
        left[r.id] = {"started": d is not None and d.path.is_dir(), "pretrain": not done,
                      "evals": store.evals_left(d, r.evals) if done else [e["name"] for e in r.evals]}
    return left


def _left_counts(left: dict[str, dict]) -> dict[str, int]:
    return {"runs_started": sum(v["started"] for v in left.values()),
            "pretrained": sum(not v["pretrain"] for v in left.values()),
            "done": sum(not v["pretrain"] and not v["evals"] for v in left.values()),
            "to_pretrain": sum(v["pretrain"] for v in left.values()),
            "evaluations": sum(len(v["evals"]) for v in left.values())}


def _eval_flops(run, cost: dict, pre) -> float | None:
    """FLOPs of a run's evaluations (``cost.eval_flops``); None when one of them is unknown."""
    from mimscale.study.cost import eval_flops

    total = 0.0
    for spec in run.evals:
        n = pre.eval_images.get((run.id, spec["name"]))
        if n is None:
            return None
        f = eval_flops(n["task"], n["train"], n["test"], n["epochs"], cost["flops_per_image"],
                       n["img_size"] / int(run.cfg.data.img_size))
        if f is None:
            return None
        total += f
    return total


def _data_lines(study: Study, pre) -> list[dict]:
    """Per pre-training source: its training pool, the held-out images a run validates on, and the images each
    data fraction selects."""
    lines: dict[str, dict] = {}
    for r in study.runs:
        n = pre.images.get(r.id)
        if n is not None:
            line = lines.setdefault(n["source"], {"source": n["source"], "pool": n["pool"], "heldout": n["heldout"],
                                                  "fractions": {}})
            line["fractions"][float(r.cfg.data.fraction)] = n["train"]
    for line in lines.values():
        line["fractions"] = dict(sorted(line["fractions"].items()))
    return list(lines.values())


def _tuning(study: Study, pre) -> list[dict]:
    """Each fine-tuning evaluation's optimisation as it will run: the global batch, the LRs scaled to it (the
    recipe gives them per 512 images), the per-layer floor rule, the precision, and the steps per epoch for each
    training-set size the checks found (none when its data is not here)."""
    from mimscale.engine.schedule import scaled_lr
    from mimscale.evaluate.config import from_spec
    from mimscale.evaluate.engine import steps_per_epoch
    from mimscale.study.spec import eval_settings

    out = []
    for spec in study.evals:
        if spec["task"] != "finetune":
            continue
        try:
            cfg = from_spec(eval_settings(spec))
        except UserError:
            continue  # a bad setting: check_all reported it, under the eval's name, with the other problems
        batch = int(cfg.batch_size)
        sizes = sorted({v["train"] for (_, name), v in pre.eval_images.items() if name == spec["name"]})
        out.append({"name": spec["name"], "global_batch": batch, "accum_steps": int(cfg.accum_steps),
                    "peak_lr": scaled_lr(cfg.base_lr, batch), "warmup_lr": scaled_lr(cfg.warmup_lr, batch),
                    "min_lr": scaled_lr(cfg.min_lr, batch), "lr_floor_rule": cfg.lr_floor_rule,
                    "precision": cfg.precision, "drop_last": bool(cfg.drop_last),
                    "steps_per_epoch": {n: steps_per_epoch(n, batch, int(cfg.accum_steps), cfg.drop_last)
                                        for n in sizes}})
    return out


def _evals_text(study: Study) -> str:
    return ", ".join(f"{e['name']} ({e['task']})" for e in study.evals) or "none"


def cmd_run(args) -> int:
    if not args.progress_every > 0:
        raise StudyError(f"--progress-every takes a number of seconds > 0, got {args.progress_every:g}")
    study = load_study(args.study)
    study_dir = _study_dir(study, args.out)
    eval_data = None
    if args.run_fn is None:  # an injected run function decides itself what data and evals mean
        world = args.gpus_per_run if args.executor == "slurm" else 1
        eval_data, pre, _ = check_all(study, study_dir, world)
        refuse(pre.problems)
    store.init_study_dir(study, study_dir)
    for name, data in eval_data_text(study, eval_data or {}).items():
        print(f"study {study.name}: eval {name} on {data}", file=sys.stderr, flush=True)
    if any("tensorboard" in r.cfg.track for r in study.runs):
        print(f"study {study.name}: curves: tensorboard --logdir {study_dir / STUDY_RUNS}", file=sys.stderr, flush=True)
    if args.executor == "slurm":
        from mimscale.study.slurm import run_slurm

        results = run_slurm(study, study_dir, cluster=args.slurm_cluster, partition=args.partition,
                            gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run,
                            timeout_min=args.timeout_min, array_parallelism=args.array_parallelism,
                            mem_gb=args.mem_gb, run_fn=args.run_fn, wait=args.wait,
                            retry_failed=not args.skip_failed, share=not args.no_share)
        if args.wait:
            bad = [r for r in results if r.get("status") not in (RunState.DONE, RunState.RUNNING)]
            for r in bad:
                print(f"run {r['run']}: {r.get('status')} {r.get('error', '')}".rstrip(), file=sys.stderr)
            return 1 if bad else 0
        return 0
    from mimscale.study.local import run_local, threads_per_worker

    if args.workers < 1:
        raise StudyError("--workers must be at least 1")
    threads = threads_per_worker(args.workers, args.threads)
    print(f"study {study.name}: {len(study.runs)} runs in {study_dir}, {args.workers} worker(s) x {threads} "
          f"thread(s); worker output goes to runs/<run>/worker.log", file=sys.stderr, flush=True)
    report = run_local(study, study_dir, workers=args.workers, threads=threads, run_fn=args.run_fn,
                       retry_failed=not args.skip_failed, wait_for_others=not args.no_wait,
                       share=not args.no_share, progress_s=args.progress_every)
    left = [r.id for r in study.runs if store.run_state(study_dir, r.id, r.evals) != RunState.DONE]
    if report.stopped:
        print(f"{PROG}: interrupted: {len(study.runs) - len(left)} of {len(study.runs)} runs done; "
              f"run the same command again to continue", file=sys.stderr)
    elif report.failed:
        print(f"{PROG}: {len(report.failed)} run(s) failed: {', '.join(report.failed)}; see "
              f"{study_dir}/runs/<run>/error.txt; rerun to retry them", file=sys.stderr)
    else:
        print(f"study {study.name}: {len(study.runs) - len(left)} of {len(study.runs)} runs done"
              + (f" ({len(left)} not done: {', '.join(left)})" if left else ""), file=sys.stderr)
    return report.exit_code()


def cmd_status(args) -> int:
    from mimscale.study.status import render_status, status_json, status_rows, watch

    study, study_dir = open_dir(args.study_dir)
    if args.watch is not None:
        if args.json:
            raise StudyError("--watch shows the table; use --json without --watch")
        if not args.watch > 0:
            raise StudyError(f"--watch takes a number of seconds > 0, got {args.watch:g}")
        return watch(study, study_dir, args.watch)
    rows = status_rows(study, study_dir)
    if args.json:
        print(json.dumps(status_json(study, study_dir, rows), indent=2, default=str))
    else:
        print(render_status(study, study_dir, rows))
    return 0


COMMANDS = {"plan": cmd_plan, "run": cmd_run, "status": cmd_status}  # "results": cli.py (the analysis layer)
