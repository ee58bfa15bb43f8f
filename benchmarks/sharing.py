"""A CPU study with and without shared training prefixes: wall time, training iterations, and the check that
every run's result is the same either way.

    python benchmarks/sharing.py [--lengths 500 1000 2000] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from mimscale.cli import main
from mimscale.study import load_study, store

BASE = {"model.drop_path_rate": 0.0, "objective.norm_target": False,
        "data.source": "shapes:size=32,pool=1000,seed=0,val_pool=1000", "data.val_size": 1000, "data.probe_size": 500,
        "train.batch_size": 64, "train.base_lr": 8.0e-3, "train.schedule": "step", "train.warmup_iters": 50,
        "train.eval_points": 10, "train.recon_images": 0}


def run(lengths: list[int], workers: int, models: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sharing.yaml"
        path.write_text(yaml.safe_dump({"name": "sharing", "base": BASE,
                                        "axes": {"model.name": models, "train.iters": lengths}}))
        times = {}
        for mode in ("--no-share", "--share"):
            out = Path(tmp) / mode.strip("-")
            args = ["study", "run", str(path), "--out", str(out), "--workers", str(workers)]
            t0 = time.perf_counter()
            assert main(args + ([mode] if mode == "--no-share" else [])) == 0
            times[mode] = time.perf_counter() - t0
        study = load_study(path)
        same = all(store.run_dir(Path(tmp) / "share", r.id).read_summary()["final_val_loss"]
                   == store.run_dir(Path(tmp) / "no-share", r.id).read_summary()["final_val_loss"] for r in study.runs)
        total = len(models) * sum(lengths)
        shared = len(models) * (max(lengths) + sum(n - int(0.875 * n) for n in lengths if n != max(lengths)))
        print(f"{len(study.runs)} runs ({', '.join(models)} x {lengths} iterations, batch 64, {workers} workers): "
              f"{total} iterations -> {shared} with sharing ({total / shared:.2f}x); wall {times['--no-share']:.0f} s "
              f"-> {times['--share']:.0f} s ({times['--no-share'] / times['--share']:.2f}x); every run's final "
              f"held-out loss identical: {same}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[500, 1000, 2000])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--models", nargs="+", default=["vit-cpu-s", "vit-cpu-m"])
    a = p.parse_args()
    run(a.lengths, a.workers, a.models)
