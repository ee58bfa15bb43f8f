"""``mimscale demo``: argument parsing and dispatch only (``run.py`` runs the demo)."""

from __future__ import annotations

import argparse

from mimscale.demo.variants import BACKBONES, DATASETS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mimscale demo",
        description="Run the built-in data-scaling study, fine-tune and probe every run, analyse it and write "
                    "report.html. Rerunning resumes.",
        epilog="examples:\n  mimscale demo --quick\n  mimscale demo --seed 1 --data photos --workers 2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="study directory (default: runs/demo, with -<variant> suffixes)")
    p.add_argument("--quick", action="store_true", help="a tiny grid of the same pipeline (about a minute)")
    p.add_argument("--seed", type=int, default=0,
                   help="data and training seed (default 0): the same study on freshly generated data")
    p.add_argument("--data", default="shapes", choices=DATASETS,
                   help="built-in data: procedural shapes (default), crops of real photographs or real "
                        "handwritten digits")
    p.add_argument("--backbone", default="vit", choices=tuple(BACKBONES),
                   help="ViT CPU presets (default) or Swin V2 CPU presets (the paper's backbone; slower)")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel runs, at least 1 (default: one per CPU core, at most 2); threads are divided")
    return p


def check_args(a: argparse.Namespace) -> None:
    """The flags by the checks of what they become: --seed is every run's ``seed`` (the one seed check of every
    command), --workers the study runner's parallel runs."""
    from mimscale.config_keys import SEED, positive

    SEED("--seed", a.seed)
    if a.workers is not None:
        positive("at least 1 (leave it out for one per CPU core, at most 2)")("--workers", a.workers)


def demo_main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    check_args(a)
    from mimscale.demo.run import run_demo

    return run_demo(a.out, quick=a.quick, seed=a.seed, data=a.data, backbone=a.backbone, workers=a.workers or 0)
