"""Command line: parse and dispatch only.

Every command is ``<name>_main(argv) -> int`` (the exit code) in its package's ``cli`` module, registered
in ``COMMANDS`` below and imported only when it runs (``--help`` and argparse's usage errors end in
``SystemExit``; ``main`` returns its code). A cli module imports torch, scipy, pandas and matplotlib only
after parsing its arguments, so ``mimscale <command> --help`` is quick.

Errors are turned into exit codes here, once, for every command: a :class:`~mimscale.errors.UserError` is
one line and exit 2; a :class:`~mimscale.errors.TrainingError` one line and exit 1; an interrupted run
says how to resume and exits 128 + the signal.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import signal
import sys

from mimscale.errors import Interrupted, TrainingError, UserError

# name -> (module, function, summary). ``pretrain`` lives here: the train package has no command module.
COMMANDS = {
    "pretrain": ("mimscale.cli", "pretrain_main", "one SimMIM pre-training run -> run dir (resumes by itself)"),
    "finetune": ("mimscale.evaluate.cli", "finetune_main", "fine-tune / linear-probe / kNN / segment a run"),
    "val-loss": ("mimscale.evaluate.cli", "val_loss_main", "held-out SimMIM loss of any checkpoint (mimscale, "
                 "official, transformers)"),
    "init": ("mimscale.study.cli", "init_main", "write a starting study file (--data ROOT: your images)"),
    "study": ("mimscale.study.cli", "study_main", "plan / run / status / results of a grid of runs"),
    "analyze": ("mimscale.analysis.cli", "analyze_main", "overfitting, scaling fits, correlations -> tables"),
    "report": ("mimscale.report.cli", "report_main", "self-contained report.html with figures and tables"),
    "data": ("mimscale.data.cli", "data_main", "nested subset manifests: subset | verify"),
    "demo": ("mimscale.demo.cli", "demo_main", "the whole loop on built-in data"),
    "bench": ("mimscale.bench.cli", "bench_main", "throughput / MFU / loader speed on this machine"),
}


def _fail(command: str, msg: str, code: int = 2) -> int:
    print(f"{' '.join(('mimscale', command)).strip()}: error: {msg}", file=sys.stderr)
    return code


def build_pretrain_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mimscale pretrain",
        description="One SimMIM pre-training run into its run directory (resumes by itself).",
        epilog="example: mimscale pretrain -c pretrain/swinv2-cpu.yaml train.iters=500 data.fraction=0.1")
    parser.add_argument("-c", "--config", help="YAML config file (defaults < file < overrides)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. model.name=swinv2-b")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return parser


def pretrain_main(argv: list[str]) -> int:
    args = build_pretrain_parser().parse_args(argv)
    from mimscale.config import load_config

    if args.print_config:
        print(_printable_config(args.config, args.overrides), end="")
        return 0
    cfg = load_config(args.config, args.overrides)
    from mimscale.train import pretrain, resolve_run_dir

    summary = pretrain(cfg)
    print(json.dumps({k: summary.get(k) for k in ("status", "final_val_loss", "best_val_loss", "best_val_step",
                                                     "images_per_s")}))
    print(f"run directory: {resolve_run_dir(cfg)}")
    print(_summary_line(summary), file=sys.stderr)  # for people; stdout stays JSON first
    return 0


def _printable_config(path, overrides) -> str:
    """The resolved config as YAML. A config without a training length is printed too, with the length unset
    and a note: it is what ``pretrain`` would refuse, and printing it is how one finds that out."""
    from mimscale.config import Config, dump_yaml, load_layered, normalise_and_validate

    unset = []

    def check(cfg) -> None:
        t = cfg.train
        if not (t.iters > 0 or t.epochs > 0 or t.samples > 0):
            unset.append(True)
            t.iters = 1  # only so that the other checks run; set back to 0 below
        normalise_and_validate(cfg)
        if unset:
            t.iters = 0

    text = dump_yaml(load_layered(Config(), path, overrides, check))
    if unset:
        text += "# no training length: give one of train.iters, train.epochs, train.samples to run it\n"
    return text


def _summary_line(summary: dict) -> str:
    def num(key: str, fmt: str) -> str:
        v = summary.get(key)
        return format(v, fmt) if isinstance(v, (int, float)) else "n/a"

    return (f"pretrain {summary.get('status')}: final held-out loss {num('final_val_loss', '.4f')}, best "
            f"{num('best_val_loss', '.4f')} at step {summary.get('best_val_step', 'n/a')}, "
            f"{num('images_per_s', '.1f')} images/s")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        lines = [f"  {name:<10} {text}" for name, (_, _, text) in COMMANDS.items()]
        print("usage: mimscale COMMAND [args]   (mimscale COMMAND --help for each)\n\ncommands:\n"
              + "\n".join(lines))
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from mimscale import __version__

        print(f"mimscale {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return _fail("", f"unknown command '{command}'; {hint}choose from {', '.join(COMMANDS)}")
    try:
        module, function, _ = COMMANDS[command]
        return int(getattr(importlib.import_module(module), function)(rest) or 0)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2, one line): a code, as every command returns
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    except UserError as e:
        return _fail(command, str(e) or type(e).__name__)
    except BrokenPipeError:  # the reader went away (`mimscale study status | head`): nothing to say to it
        sys.stdout = None
        return 128 + signal.SIGPIPE
    except OSError as e:  # a path that cannot be read or written, a full disk: say which, no traceback
        return _fail(command, " ".join(f"{e.strerror or e}{f': {e.filename}' if e.filename else ''}".split()))
    except TrainingError as e:
        return _fail(command, str(e), 1)
    except Interrupted as e:
        print(f"mimscale {command}: {e}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        return _fail(command, "interrupted; rerun the same command to continue", 128 + signal.SIGINT)


if __name__ == "__main__":
    code = main()
    if "mimscale.engine.distributed" in sys.modules:  # a torchrun rank ends through its process group's exit
        sys.modules["mimscale.engine.distributed"].exit_process(code)
    sys.exit(code)
