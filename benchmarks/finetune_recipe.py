"""The CPU fine-tuning recipe, found by a sweep: base_lr x (pre-trained, random init) per CPU preset.

For each pre-trained run given, fine-tunes its encoder and the same encoder from random init with the
shipped CPU config (finetune/finetune-cpu.yaml) at every ``--lrs`` value, two fine-tunings at a
time (one thread each), and prints one markdown row per (run, init, base_lr): final and best top-1.

    python benchmarks/finetune_recipe.py RUN_DIR... [--lrs 1e-3 4e-3 1.6e-2] [-- key=value ...]

Overrides after ``--`` go to every fine-tuning (e.g. ``epochs=20`` or a smaller labelled pool).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "src" / "mimscale" / "configs" / "finetune" / "finetune-cpu.yaml"


def _one(run: Path, init: str, lr: float, extra: list[str]) -> dict:
    name = f"sweep-{init}-{lr:g}"
    cmd = [sys.executable, "-m", "mimscale.cli", "finetune", str(run), "-c", str(CONFIG), f"name={name}",
           f"init={init}", f"base_lr={lr}", "threads=1", *extra]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"run": run.name, "init": init, "lr": lr, "error": proc.stderr.strip().splitlines()[-1]}
    res = json.loads((run / "eval" / f"{name}.json").read_text())
    model = json.loads((run / "summary.json").read_text()).get("model", "?")
    return {"run": run.name, "model": model, "init": init, "lr": lr, "top1": res["metrics"]["top1"],
            "final_top1": res["metrics"]["final_top1"], "seconds": time.time() - t0}


def main() -> int:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--lrs", nargs="+", type=float, default=[1e-3, 4e-3, 1.6e-2])
    p.add_argument("--inits", nargs="+", default=["pretrained", "random"])
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args(argv)
    jobs = [(run, init, lr) for run in a.runs for init in a.inits for lr in a.lrs]
    with ThreadPoolExecutor(a.jobs) as pool:
        rows = list(pool.map(lambda j: _one(*j, extra), jobs))
    print(f"| run | model | init | base_lr | final top-1 | best top-1 | s |   (extra: {' '.join(extra) or '-'})")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['run']} | | {r['init']} | {r['lr']:g} | error: {r['error']} | | |")
        else:
            print(f"| {r['run']} | {r['model']} | {r['init']} | {r['lr']:g} | {r['final_top1']:.3f} | "
                  f"{r['top1']:.3f} | {r['seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
