"""``mimscale bench``: argument parsing and printing only (torch loads after parsing)."""

from __future__ import annotations

import argparse
import json
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mimscale bench",
        description="This machine's numbers for one preset: SimMIM train-step images/s, achieved FLOP/s and MFU "
                    "against a measured matmul peak, loader images/s, and peak memory of a training step.",
        epilog="examples:\n  mimscale bench --model vit-cpu-s --batch 32\n"
               "  mimscale bench --model swinv2-b --device cuda --precision bf16 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="swinv2-cpu-m", help="model preset (mimscale.models.list_models())")
    p.add_argument("--batch", type=int, default=64, help="images per training step (default %(default)s)")
    p.add_argument("--img-size", type=int, default=0, help="0: the preset's own size")
    p.add_argument("--steps", type=int, default=10, help="timed training steps (default %(default)s)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="training step precision (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default 0: torch's own choice)")
    p.add_argument("--workers", type=int, default=None,
                   help="loader worker processes (default: data.num_workers's default, 0: in process)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def check_args(a: argparse.Namespace) -> None:
    """Each flag by the check of the config key it stands for (one rule for a value, whichever command takes
    it); a one-line ConfigError for the first bad one. Torch-free: runs before anything is measured."""
    from mimscale.config import DEVICE, KEYS
    from mimscale.config_keys import at_least_zero, positive

    KEYS["train.batch_size"].check("--batch", a.batch)
    at_least_zero("0: the preset's own size")("--img-size", a.img_size)
    positive()("--steps", a.steps)
    DEVICE("--device", a.device)
    KEYS["threads"].check("--threads", a.threads)
    KEYS["data.num_workers"].check("--workers", a.workers)


def bench_main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    from mimscale.config import DataConfig

    if a.workers is None:
        a.workers = DataConfig.num_workers
    check_args(a)
    from mimscale.bench.measure import bench

    out = bench(a.model, a.batch, a.img_size, a.steps, a.precision, a.device, a.threads, a.workers)
    if a.json:
        print(json.dumps(out))
        print(f"bench {a.model}: {out['images_per_s']:.1f} train images/s, MFU {100 * out['mfu']:.1f}%, "
              f"{out['peak_memory_mb']:.0f} MiB peak", file=sys.stderr)  # for people; stdout is the JSON line
        return 0
    peak = out["matmul_peak_flops"]
    rows = [("model", f"{a.model} ({out['params'] / 1e6:.2f}M params, {out['img_size']} px, batch {a.batch}, "
                      f"{a.precision})"),
            ("device", f"{out['device']}, {out['threads']} threads"),
            ("train images/s", f"{out['images_per_s']:.1f}"),
            ("model FLOPs/image", f"{out['flops_per_image'] / 1e9:.3f} GFLOP (forward + backward)"),
            ("achieved", f"{out['flops_per_s'] / 1e9:.1f} GFLOP/s"),
            ("matmul peak", f"{peak / 1e9:.1f} GFLOP/s ({a.precision}, 2048^2)"),
            ("MFU", f"{100 * out['mfu']:.1f}%"),
            ("loader images/s", f"{out['loader_images_per_s']:.0f} with {a.workers} workers "
                                f"({out['loader_vs_train']:.1f}x training)"),
            ("peak memory", f"{out['peak_memory_mb']:.0f} MiB")]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    sys.stdout.flush()
    return 0
