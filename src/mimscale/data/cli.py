"""``mimscale data subset | verify``: nested subset manifests from the command line.

Errors are ``DataError`` (one line); ``mimscale.cli`` prints them and exits 2.
"""

from __future__ import annotations

import argparse


def _holdout(text: str):
    """'auto' | 'none' | a fraction in (0, 1) | an image count."""
    t = text.strip().lower()
    if t in ("auto", "none"):
        return None if t == "none" else "auto"
    try:
        v = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected auto, none, a fraction or a count, got {text!r}"
        ) from None
    return int(v) if v >= 1 else v


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mimscale data",
        description="Nested, seeded, class-stratified subset manifests (JSON: ids + sha256).",
        epilog="examples:\n  mimscale data subset shapes:size=32,pool=1000 --out subsets/\n  mimscale data verify subsets/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True)
    s = sub.add_parser(
        "subset",
        help="write subset manifests for a source",
        description="Write one manifest per fraction (nested: 10% inside 20% inside ...) and, for sources "
        "without their own validation split, a held-out manifest disjoint from every subset.",
        epilog="examples:\n  mimscale data subset shapes:size=32,pool=1000 --fractions 0.1,0.2,0.5,1 --seed 0 "
        "--out subsets/\n  mimscale data subset /data/imagenet22k --out subsets/ --store subsets/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("source", help="source spec: shapes[:k=v,...], photos[:k=v,...], digits[:k=v,...], sample_images, a folder, shards")
    s.add_argument("--fractions", default="0.1,0.2,0.5,1", help="comma-separated, each in (0, 1]")
    s.add_argument("--seed", type=int, default=0, help="subset seed")
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument(
        "--holdout",
        type=_holdout,
        default="auto",
        help="held-out split for sources without one: auto (10%%, at most 10,000), none, a fraction or a count",
    )
    s.add_argument("--holdout-seed", type=int, default=0, help="seed of the held-out split")
    s.add_argument(
        "--store",
        default=None,
        help="write each id list once, gzipped, to STORE/manifests/<sha256>.json.gz and small references in "
        "--out (for ImageNet-22K-sized sources; default: whole manifests in --out)",
    )
    v = sub.add_parser(
        "verify",
        help="re-derive and check the manifests of a directory",
        description="Check every manifest's sha256, re-derive its ids from the source description and seed, "
        "and check nesting and disjointness from the held-out set. A manifest that is a reference is checked "
        "with the id list it points to.",
        epilog="examples:\n  mimscale data verify subsets/\n  mimscale data verify study/runs/5dc388ab45/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("directory", help="a directory written by `mimscale data subset`, or a run directory")
    return parser


def data_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.action == "subset":
        from mimscale.config_keys import SEED

        SEED("--seed", args.seed)  # the seeds every command checks alike (data.subset_seed takes this value)
        SEED("--holdout-seed", args.holdout_seed)
    from mimscale.data.plan import subset_command, verify_command

    if args.action == "subset":
        print(
            subset_command(args.source, args.fractions, args.seed, args.out, args.holdout, args.holdout_seed,
                           args.store)
        )
    else:
        print(verify_command(args.directory))
    return 0
