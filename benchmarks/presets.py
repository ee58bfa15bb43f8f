"""Pre-training helps every CPU preset: each preset pre-trained on the demo's data fine-tunes to a higher top-1
than the same encoder from random init, with the shipped CPU fine-tuning config on the demo's labelled pools.

Each preset runs the demo's full-pool configuration of its family (``mimscale demo``'s built-in study) with
this preset, ``--iters`` pre-training iterations (default 2,000, the demo's longer length: after 500
iterations vit-cpu-l fine-tunes below its random init), then finetune/finetune-cpu.yaml (packaged) from the
pre-trained encoder and from random init. One thread per preset, ``--jobs`` presets at a time. 20+ minutes
on 2 cores for all seven presets (``make bench-presets``); the test suite keeps a quick version for one ViT and
one Swin V2 preset (tests/evaluate/test_finetune_presets.py).

    python benchmarks/presets.py [--presets vit-cpu-s swinv2-cpu-t] [--iters 2000] [--jobs 2] [--margin 0.02]
        [--data shapes|photos|digits] [-- key=value ...]

Prints one markdown row per preset; exits 1 when a preset's pre-trained top-1 is not ``--margin`` above its
random init's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from mimscale.demo.variants import DATASETS

CONFIG = Path(__file__).resolve().parents[1] / "src" / "mimscale" / "configs" / "finetune" / "finetune-cpu.yaml"
PRESETS = ["vit-cpu-s", "vit-cpu-m", "vit-cpu-l", "swinv2-cpu-t", "swinv2-cpu-s", "swinv2-cpu-m", "swinv2-cpu-l"]


def demo_config(preset: str, run_dir: Path, iters: int, data: str = "shapes"):
    """The demo's full-pool run of this preset's family on ``data`` (``mimscale demo --data``), with this preset
    and ``iters`` iterations, and the demo's fine-tuning evaluation (its labelled pools)."""
    import yaml
    from omegaconf import OmegaConf

    from mimscale.demo import builtin_study, variant_study
    from mimscale.study.spec import parse_study

    path = builtin_study(False, "swinv2" if preset.startswith("swinv2") else "vit")
    study = parse_study(variant_study(yaml.safe_load(path.read_text()), data, 0), str(path))
    cfg = next(r.cfg for r in study.runs if r.cfg.data.fraction == 1.0)
    spec = next(e for e in study.evals if e["task"] == "finetune")
    cfg = OmegaConf.merge(cfg, {"model": {"name": preset}, "train": {"iters": iters}, "run_dir": str(run_dir),
                                "threads": 1})
    return cfg, spec


def pretrained_vs_random(preset: str, root: Path, iters: int, config: Path = CONFIG,
                         extra: tuple[str, ...] = (), data: str = "shapes") -> dict[str, float]:
    """Pre-train ``preset`` into ``root / preset``, then fine-tune it and its random init: top-1 by init."""
    from mimscale.evaluate import finetune_main
    from mimscale.rundir import RunDir, read_json
    from mimscale.train import pretrain

    cfg, spec = demo_config(preset, root / preset, iters, data)
    pretrain(cfg)
    top1 = {}
    for init in ("pretrained", "random"):
        args = [str(cfg.run_dir), "-c", str(config), f"init={init}", f"name={init}", "threads=1",
                f"train_source={spec['train_source']}", f"test_source={spec['test_source']}", *extra]
        if finetune_main(args) != 0:
            raise RuntimeError(f"{preset}: fine-tuning from {init} failed")
        top1[init] = read_json(RunDir(cfg.run_dir).eval_result(init))["metrics"]["top1"]
    return top1


def _one(preset: str, iters: int, extra: tuple[str, ...], data: str) -> tuple[str, dict[str, float], float]:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        top1 = pretrained_vs_random(preset, Path(tmp), iters, extra=extra, data=data)
    return preset, top1, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=PRESETS)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--margin", type=float, default=0.02)
    ap.add_argument("--data", choices=DATASETS, default="shapes", help="the demo's dataset (--data)")
    ap.add_argument("overrides", nargs="*", help="after --: key=value overrides of every fine-tuning")
    a = ap.parse_args()
    extra = tuple(a.overrides)
    print("| preset | pre-training iterations, fine-tuning overrides | fine-tuned top-1 pre-trained | random init "
          "| gap | seconds |\n|---|---|---|---|---|---|", flush=True)
    failed = []
    with ProcessPoolExecutor(a.jobs) as pool:
        n = len(a.presets)
        for preset, top1, secs in pool.map(_one, a.presets, [a.iters] * n, [extra] * n, [a.data] * n):
            gap = top1["pretrained"] - top1["random"]
            print(f"| {preset} | {a.data}, {a.iters} {' '.join(extra)} | {top1['pretrained']:.3f} | {top1['random']:.3f} | {gap:+.3f} | "
                  f"{secs:.0f} |", flush=True)
            if gap <= a.margin:
                failed.append(preset)
    if failed:
        print(f"pre-training did not beat random init by {a.margin} at: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
