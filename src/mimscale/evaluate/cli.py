"""``mimscale finetune RUN_DIR|CHECKPOINT [-c cfg.yaml] [key=value ...]`` and ``mimscale val-loss CHECKPOINT
--data SOURCE``: argument parsing and dispatch only (torch and the evaluation code load after parsing)."""

from __future__ import annotations

import argparse
import json
import sys

_PROG = "mimscale finetune"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_PROG,
        description="Evaluate a pre-trained run or checkpoint file: task=finetune|linear|knn|segment. Results go "
                    "to RUN_DIR/eval/<name>.json (for a file FILE.pth: FILE_eval/eval/<name>.json; name defaults "
                    "to the task); a finished evaluation is reused.",
        epilog="examples:\n  mimscale finetune runs/demo/abc123 task=knn\n"
               "  mimscale finetune runs/demo/abc123 -c finetune/linear-cpu.yaml init=random name=linear-rand",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    # nargs="?" and a check below: intermixed parsing would otherwise also call the overrides "required".
    p.add_argument("run_dir", metavar="RUN_DIR", nargs="?",
                   help="a pre-training run directory (config.yaml + checkpoints/) or a checkpoint file "
                        "(mimscale's, or the official SimMIM code's: its config gives the model)")
    p.add_argument("-c", "--config", help="an evaluation YAML (a path, or a packaged one: finetune/finetune.yaml, finetune/knn-cpu.yaml, ...)")
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
    parser = build_parser()
    try:
        # intermixed: "RUN_DIR -c cfg.yaml key=value" has positionals on both sides of an option
        args = parser.parse_intermixed_args(argv)
        if args.run_dir is None:
            parser.error("the following argument is required: RUN_DIR")
    except SystemExit as e:  # --help (0) or a usage error (2; argparse printed it)
        return int(e.code or 0)
    from mimscale.evaluate.config import load_eval_config
    from mimscale.evaluate.runner import result_path, run

    cfg = load_eval_config(args.config, args.overrides)  # a UserError here and below: mimscale.cli, exit 2
    result = run(args.run_dir, cfg, force=args.force)
    print(_summary(result))
    print(f"wrote {result_path(args.run_dir, cfg)}")
    return 0


def build_val_loss_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mimscale val-loss",
        description="The held-out SimMIM loss of any checkpoint (a mimscale run or checkpoint, an official SimMIM "
                    "checkpoint, a transformers directory) with the study's validation protocol.",
        epilog="examples:\n  mimscale val-loss runs/demo/abc123 --data shapes:size=32,pool=1000\n"
               "  mimscale val-loss simmim_swinv2_b.pth --data folder:/data/imagenet/val -c pretrain/swinv2-paper.yaml model.name=swinv2-b",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="run directory, checkpoint file or transformers directory")
    p.add_argument("--data", required=True, help="the held-out source, e.g. folder:/data/imagenet/val")
    p.add_argument("-c", "--config", help="a pre-training config giving the model and the recipe")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. model.name=swinv2-b data.val_size=10000")
    return p


def val_loss_main(argv: list[str] | None = None) -> int:
    """``mimscale val-loss``: prints the result as one JSON line (stdout) and a sentence (stderr)."""
    a = build_val_loss_parser().parse_intermixed_args(argv)  # "CKPT --data X key=value": both sides of an option
    from mimscale.evaluate.val_loss import val_loss

    result = val_loss(a.checkpoint, a.data, a.config, a.overrides)
    print(json.dumps(result))
    print(f"held-out loss {result['val_loss']:.6f} over {result['images']} images ({result['format']} checkpoint)",
          file=sys.stderr)
    return 0
