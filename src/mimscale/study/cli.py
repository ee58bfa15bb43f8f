"""``mimscale study plan | run | status | results``: argument parsing and dispatch only (``commands.py`` does
the work; it loads after parsing, so ``--help`` stays light)."""

from __future__ import annotations

import argparse
import sys

PROG = "mimscale study"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors: one line, exit 2, like ours
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Run a grid of SimMIM pre-trainings (model x data x length) and "
                                       "their evaluations, resumably, on this machine or Slurm.",
                epilog="examples:\n  mimscale study plan studies/cpu-small.yaml\n"
                       "  mimscale study run studies/cpu-small.yaml --workers 2\n"
                       "  mimscale study status runs/cpu-small",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    q = sub.add_parser("plan", help="print the runs of a study file and their estimated cost",
                       description="Print the runs of a study file, their images and FLOPs, and the shared "
                                   "training prefixes; trains nothing.",
                       epilog="example: mimscale study plan studies/cpu-small.yaml --json")
    q.add_argument("study", help="study file (YAML)")
    q.add_argument("--out", help="study directory (default: the file's 'out', else runs/<name>)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.add_argument("--no-flops", action="store_true", help="skip the FLOP count (builds each model on meta)")
    q.add_argument("--no-share", action="store_true", help="plan every run in full (no shared prefixes)")

    r = sub.add_parser(
        "run", help="run every unfinished run of a study (rerun to resume)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run every run of the study that is not finished: done runs are skipped, partial ones "
                    "resume from their\nlast checkpoint, failed ones are retried. Ctrl-C stops cleanly; the "
                    "same command continues.\nSeveral `study run` processes (or hosts) may share one study "
                    "directory: each run is claimed by one.",
        epilog="examples:\n"
               "  mimscale study run studies/cpu-small.yaml --workers 2\n"
               "  mimscale study run studies/paper.yaml --executor slurm --partition gpu "
               "--gpus-per-run 8 --cpus-per-run 64\n"
               "  mimscale study run runs/cpu-small/study.yaml      # continue a study from its directory")
    r.add_argument("study", help="study file (YAML)")
    r.add_argument("--out", help="study directory (default: the file's 'out', else runs/<name>)")
    r.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="where runs execute: this machine (default) or Slurm job arrays")
    r.add_argument("--workers", type=int, default=1, help="local: runs at once (default 1)")
    r.add_argument("--threads", type=int, default=0,
                   help="local: torch threads per worker (default: this machine's CPUs / workers)")
    r.add_argument("--skip-failed", action="store_true", help="do not retry runs that failed before")
    r.add_argument("--no-share", action="store_true",
                   help="train every run in full instead of branching shorter runs from longer ones where exact")
    r.add_argument("--no-wait", action="store_true",
                   help="local: return when nothing is left to start here, without waiting for runs that "
                        "another process has claimed")
    s = r.add_argument_group("slurm (--executor slurm)")
    s.add_argument("--partition", help="Slurm partition")
    s.add_argument("--gpus-per-run", type=int, default=1,
                   help="GPUs per run; >1 runs torchrun DDP on one node")
    s.add_argument("--cpus-per-run", type=int, default=8, help="CPU cores per run (default %(default)s)")
    s.add_argument("--mem-gb", type=float, default=None, help="memory per run in GB (default: the partition's)")
    s.add_argument("--timeout-min", type=int, default=60 * 24 * 3,
                   help="per task; it requeues and resumes after")
    s.add_argument("--array-parallelism", type=int, default=32, help="tasks of the array running at once")
    s.add_argument("--wait", action="store_true", help="block until every task ends")
    s.add_argument("--slurm-cluster", default=None, choices=("slurm", "local", "debug"),
                   help="submitit backend (default: Slurm if present); local/debug run without Slurm")
    r.add_argument("--progress-every", type=float, default=60.0, metavar="SECONDS",
                   help="when stderr is not a terminal: a progress line this often, and when a run passes a "
                        "tenth of its steps (default %(default)s)")
    r.add_argument("--run-fn", default=None, help=argparse.SUPPRESS)  # tests: 'module:function'

    t = sub.add_parser("status", help="table of runs: status, step/total, val loss, images/s, ETA",
                       description="Where every run of a study stands, from its files alone (safe while runs "
                                   "write).", epilog="examples:\n  mimscale study status runs/cpu-small --json\n"
                                                     "  mimscale study status runs/cpu-small --watch 30",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("study_dir", help="study directory (or the study file)")
    t.add_argument("--json", action="store_true", help="machine-readable output")
    t.add_argument("--watch", nargs="?", type=float, const=10.0, default=None, metavar="SECONDS",
                   help="redraw every SECONDS (default 10) until nothing runs; Ctrl-C stops watching")

    u = sub.add_parser("results", help="write the results table (one row per run) and the curve table",
                       description="Write results.csv (one row per run) and curves.csv (every logged metric).",
                       epilog="example: mimscale study results runs/cpu-small --out results.csv")
    u.add_argument("study_dir", help="study directory (or the study file)")
    u.add_argument("--out", help="results CSV (default STUDY_DIR/results.csv)")
    u.add_argument("--curves", help="long-format curves CSV (default: curves.csv beside --out)")
    return p


def cmd_results(args) -> int:
    """``study results``: the results table is the analysis layer's (pandas), hence here and not in commands.py."""
    from mimscale.analysis.study_table import write_results  # pandas: only for this command
    from mimscale.rundir import RunState
    from mimscale.study.commands import open_dir

    study, study_dir = open_dir(args.study_dir)
    out, curves, runs = write_results(study, study_dir, args.out, args.curves)
    done = int((runs["status"] == RunState.DONE).sum()) if "status" in runs else 0
    print(f"wrote {out} ({len(runs)} runs, {done} done) and {curves}")
    return 0


def check_run_args(args: argparse.Namespace) -> None:
    """``study run``'s numbers, before anything is written: --threads goes into every run's config.yaml, so it is
    checked by the ``threads`` key's own check (a bad value there would stop every run from resuming)."""
    from mimscale.config import KEYS
    from mimscale.config_keys import at_least_zero, positive

    positive("at least 1")("--workers", args.workers)
    KEYS["threads"].check("--threads", args.threads)
    at_least_zero("0 asks for a CPU partition")("--gpus-per-run", args.gpus_per_run)
    for flag in ("cpus_per_run", "timeout_min", "array_parallelism"):
        positive()(f"--{flag.replace('_', '-')}", getattr(args, flag))
    if args.mem_gb is not None:
        positive()("--mem-gb", args.mem_gb)


def build_init_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mimscale init",
                description="Write a starting study file: commented, valid, ready for `mimscale study plan`. With "
                            "--data, the folder's layout (ROOT/train/<class>/*.jpg, ROOT/val/<class>/*.jpg) is "
                            "checked and the file pre-trains on ROOT/train and evaluates on ROOT/val.",
                epilog="examples:\n  mimscale init --data ~/my-images --out my-study.yaml\n"
                       "  mimscale init                      # the built-in shapes, into my-study.yaml",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", metavar="ROOT", help="your images: ROOT/train/<class>/*.jpg and ROOT/val/<class>/*.jpg")
    p.add_argument("--out", metavar="FILE", default="my-study.yaml", help="the study file to write (default %(default)s; never "
                                                          "overwritten)")
    p.add_argument("--iters", metavar="N,N", default="250,1000",
                   help="training lengths in steps, comma-separated (default %(default)s)")
    return p


def init_main(argv: list[str] | None = None) -> int:
    """``mimscale init``: write a starting study file."""
    args = build_init_parser().parse_args(argv)
    from pathlib import Path

    from mimscale.errors import StudyError
    from mimscale.study.init import write_study_file

    try:
        iters = [int(x) for x in args.iters.split(",") if x.strip()]
    except ValueError:
        iters = []
    if not iters or min(iters) < 1:
        raise StudyError(f"--iters must be positive step counts separated by commas, got '{args.iters}'")
    out = Path(args.out)
    write_study_file(out, Path(args.data) if args.data else None, iters)
    print(f"wrote {out}; next: mimscale study plan {out}")
    return 0


def study_main(argv: list[str] | None = None) -> int:
    """``mimscale study ...``; returns the exit code. Bad input raises a UserError (``mimscale.cli``: exit 2)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2): a code to return, not an exit
        return e.code if isinstance(e.code, int) else 2
    if args.command == "run":
        check_run_args(args)
    from mimscale.study.commands import COMMANDS

    return {**COMMANDS, "results": cmd_results}[args.command](args)
