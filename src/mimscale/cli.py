"""Command line: parse and dispatch only. Every command exits 2 with one line on bad input."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

# Commands whose argument parsing lives with their module: name -> (module, function, summary).
DELEGATED = {
    "finetune": ("mimscale.evaluate", "finetune_main", "fine-tune / linear-probe / kNN / segment a run"),
    "study": ("mimscale.study", "study_main", "plan / run / status / results of a grid of runs"),
    "analyze": ("mimscale.analysis", "analyze_main", "overfitting, scaling fits, correlations -> tables"),
    "report": ("mimscale.report", "report_main", "self-contained report.html with figures and tables"),
    "data": ("mimscale.data.cli", "data_main", "nested subset manifests: subset | verify"),
    "demo": ("mimscale.demo", "demo_main", "the whole loop on built-in data"),
    "bench": ("mimscale.bench", "bench_main", "throughput / MFU / loader speed on this machine"),
}


def _user_errors() -> tuple[type[BaseException], ...]:
    from mimscale.config import ConfigError
    from mimscale.models import UnknownModelError

    errors: list[type[BaseException]] = [ConfigError, UnknownModelError]
    try:
        from mimscale.data import DataError

        errors.append(DataError)
    except ImportError:
        pass
    return tuple(errors)


def _fail(command: str, msg: str, code: int = 2) -> int:
    print(f"{' '.join(('mimscale', command)).strip()}: error: {msg}", file=sys.stderr)
    return code


def pretrain_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mimscale pretrain",
        description="One SimMIM pre-training run into its run directory (resumes by itself).",
        epilog="example: mimscale pretrain -c configs/pretrain/swinv2-cpu-s.yaml train.iters=500 data.fraction=0.1")
    parser.add_argument("-c", "--config", help="YAML config file (defaults < file < overrides)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. model.name=swinv2-b")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    args = parser.parse_args(argv)
    from mimscale.config import dump_yaml, load_config
    from mimscale.train import Interrupted, TrainingError, pretrain
    from mimscale.train.pretrain import resolve_run_dir

    try:
        cfg = load_config(args.config, args.overrides)
        if args.print_config:
            print(dump_yaml(cfg), end="")
            return 0
        summary = pretrain(cfg)
    except _user_errors() as e:
        return _fail("pretrain", str(e))
    except TrainingError as e:
        return _fail("pretrain", str(e), 1)
    except Interrupted as e:
        print(f"mimscale pretrain: {e}", file=sys.stderr)
        return 128 + e.signum
    print(json.dumps({k: summary.get(k) for k in ("status", "final_val_loss", "best_val_loss", "best_val_step",
                                                     "images_per_s")}))
    print(f"run directory: {resolve_run_dir(cfg)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"pretrain": "one SimMIM pre-training run -> run dir (resumes by itself)",
                **{k: v[2] for k, v in DELEGATED.items()}}
    if not argv or argv[0] in ("-h", "--help"):
        lines = [f"  {name:<10} {text}" for name, text in commands.items()]
        print("usage: mimscale COMMAND [args]   (mimscale COMMAND --help for each)\n\ncommands:\n"
              + "\n".join(lines))
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from mimscale import __version__

        print(f"mimscale {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "pretrain":
        return pretrain_main(rest)
    if command not in DELEGATED:
        return _fail("", f"unknown command '{command}'; choose from {', '.join(commands)}")
    module, function, _ = DELEGATED[command]
    entry = getattr(importlib.import_module(module), function)
    try:
        return int(entry(rest) or 0)
    except _user_errors() as e:
        return _fail(command, str(e))
    except KeyboardInterrupt:
        return _fail(command, "interrupted; rerun the same command to continue", 130)


if __name__ == "__main__":
    sys.exit(main())
