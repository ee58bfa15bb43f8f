"""``mimscale finetune RUN_DIR|CHECKPOINT [-c cfg.yaml] [key=value ...]``: argument parsing and dispatch only."""

from __future__ import annotations

import argparse

from mimscale.evaluate.config import load_eval_config
from mimscale.evaluate.runner import result_path, run

_PROG = "mimscale finetune"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_PROG,
        description="Evaluate a pre-trained run or checkpoint file: task=finetune|linear|knn|segment. Results go "
                    "to RUN_DIR/eval/<name>.json (for a file FILE.pth: FILE_eval/eval/<name>.json; name defaults "
                    "to the task); a finished evaluation is reused.",
        epilog="examples:\n  mimscale finetune runs/demo/abc123 task=knn\n"
               "  mimscale finetune runs/demo/abc123 -c configs/finetune/linear-cpu.yaml init=random name=linear-rand",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    # nargs="?" and a check below: intermixed parsing would otherwise also call the overrides "required".
    p.add_argument("run_dir", metavar="RUN_DIR", nargs="?",
                   help="a pre-training run directory (config.yaml + checkpoints/) or a checkpoint file "
                        "(mimscale's, or the official SimMIM code's: its config gives the model)")
    p.add_argument("-c", "--config", help="an evaluation YAML (see configs/finetune/)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="EvalConfig overrides, e.g. task=linear")
    p.add_argument("--force", action="store_true", help="redo the evaluation even if its result exists")
    return p


def _summary(result: dict) -> str:
    m = {**result.get("details", {}), **result["metrics"]}
    keys = [result["headline"]] + [k for k in ("top5", "final_top1", "best_lr", "final_miou", "baseline_miou")
                                   if k in m]
    shown = ", ".join(f"{k} {m[k]:.4f}" if isinstance(m[k], float) else f"{k} {m[k]}" for k in keys)
    return f"{result['task']} ({result['name']}): {shown} [{result['wall_time_s']:.1f}s]"


def finetune_main(argv: list[str] | None = None) -> int:
    """CLI entry: 0 on success; bad input raises a UserError (``mimscale.cli`` prints it, exit 2)."""
    parser = _parser()
    try:
        # intermixed: "RUN_DIR -c cfg.yaml key=value" has positionals on both sides of an option
        args = parser.parse_intermixed_args(argv)
        if args.run_dir is None:
            parser.error("the following argument is required: RUN_DIR")
    except SystemExit as e:  # --help (0) or a usage error (2; argparse printed it)
        return int(e.code or 0)
    cfg = load_eval_config(args.config, args.overrides)  # a UserError here and below: mimscale.cli, exit 2
    result = run(args.run_dir, cfg, force=args.force)
    print(_summary(result))
    print(f"wrote {result_path(args.run_dir, cfg)}")
    return 0
