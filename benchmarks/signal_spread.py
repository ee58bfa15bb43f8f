"""The spread of the downstream signal tests (tests/evaluate/test_signal.py) over pre-training seeds, thread
counts and CPU kernels: pre-trained minus random-init top-1 for fine-tuning and the two frozen-feature probes.

Float results differ between CPU models (ATen picks its kernels by CPU capability), so a margin tuned on one
machine is not a property of the method: the tests assert margins below the smallest gap of this matrix.
Each cell runs in a fresh process (ATEN_CPU_CAPABILITY is read once, when torch loads) and does what the
tests do: the session fixture's pre-training (tests/evaluate/eval_runs.py, with the cell's seed for the
torch/NumPy generators and the shapes pool) and the tests' evaluations, all with the cell's thread count.

    python benchmarks/signal_spread.py [--seeds 0 1 2] [--caps default avx2 avx2+blas] [--threads 1 2] [--tasks finetune] [--jobs 1]

Capabilities this CPU lacks are reported and skipped (torch falls back silently, which would mislabel a cell).
Prints one markdown row per cell and, per task, the smallest gap.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("finetune", "linear", "knn")


def _cell(seed: int, threads: int, tasks: list[str]) -> dict:
    """One cell, in this process: pre-train like the session fixture, then evaluate like the tests."""
    sys.path.insert(0, str(ROOT / "tests" / "evaluate"))
    import eval_runs
    import torch
    from omegaconf import OmegaConf

    from mimscale.evaluate import load_eval_config, run

    torch.set_num_threads(threads)
    eval_runs.PRETRAIN = {**eval_runs.PRETRAIN, "seed": seed}
    out = {"seed": seed, "threads": threads, "cap": torch.backends.cpu.get_cpu_capability()}
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        t0 = time.perf_counter()
        eval_runs.pretrain_run(run_dir)
        out["pretrain_s"] = time.perf_counter() - t0
        for task in tasks:
            if task == "finetune":  # test_finetuning_pretrained_beats_random_init
                cfg = load_eval_config(ROOT / "src" / "mimscale" / "configs" / "finetune" / "finetune-cpu.yaml")
            else:  # test_pretrained_beats_random_init
                cfg = load_eval_config(None, [f"task={task}", "batch_size=250"])
            t0 = time.perf_counter()
            for init in ("pretrained", "random"):
                res = run(run_dir, OmegaConf.merge(cfg, {"name": f"{task}-{init}", "init": init,
                                                         "threads": threads}))
                out[f"{task}_{init}"] = res["metrics"]["top1"]
                if "final_top1" in res["metrics"]:
                    out[f"{task}_{init}_final"] = res["metrics"]["final_top1"]
                    curve = [h["top1"] for h in res["history"] if h.get("top1") is not None]
                    out[f"{task}_{init}_curve"] = sum(curve) / len(curve)  # mean top-1 over the epochs
            out[f"{task}_s"] = time.perf_counter() - t0
    return out


# ATEN_CPU_CAPABILITY picks only ATen's own vectorised kernels; matrix products go to MKL and convolutions to
# oneDNN, which choose their instruction set themselves. "CAP+blas" pins those two as well (their ISA caps),
# the closer stand-in for a CPU that lacks the instructions.
BLAS_ISA = {"default": ("SSE4_2", "SSE41"), "avx2": ("AVX2", "AVX2"), "avx512": ("AVX512", "AVX512_CORE")}


def _env(cap: str) -> dict:
    aten, _, blas = cap.partition("+")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": aten, "PYTHONPATH": str(ROOT / "src")}
    if blas:
        env["MKL_ENABLE_INSTRUCTIONS"], env["ONEDNN_MAX_CPU_ISA"] = BLAS_ISA[aten]
    return env


def _supported(cap: str) -> bool:
    """Whether torch runs ``cap`` here (it silently falls back to a lower capability when the CPU lacks it)."""
    probe = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    got = subprocess.run([sys.executable, "-c", probe], env=_env(cap), capture_output=True,
                         text=True).stdout.strip().lower()
    return got == cap.partition("+")[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--caps", nargs="+", default=["default", "avx2", "avx2+blas"])
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    ap.add_argument("--jobs", type=int, default=1, help="cells at a time (each one process)")
    ap.add_argument("--cell", action="store_true", help=argparse.SUPPRESS)  # internal: run one cell
    ap.add_argument("--json", type=Path, help="also append each cell's numbers to this JSON-lines file")
    a = ap.parse_args()
    if a.cell:
        print(json.dumps(_cell(a.seeds[0], a.threads[0], a.tasks)))
        return 0
    caps = []
    for cap in a.caps:
        if _supported(cap):
            caps.append(cap)
        else:
            print(f"# ATEN_CPU_CAPABILITY={cap}: not supported by this CPU, skipped", flush=True)
    cols = [t for t in TASKS if t in a.tasks]
    print("| seed | kernels | threads | " + " | ".join(f"{t} pre / rand (gap)" for t in cols) + " | seconds |")
    print("|---|---|---|" + "---|" * len(cols) + "---|", flush=True)
    gaps: dict[str, list[float]] = {t: [] for t in cols}

    def one(cell: tuple[int, str, int]) -> tuple[tuple[int, str, int], subprocess.CompletedProcess, float]:
        seed, cap, threads = cell
        env = _env(cap)
        cmd = [sys.executable, __file__, "--cell", "--seeds", str(seed), "--threads", str(threads), "--tasks", *cols]
        t0 = time.perf_counter()
        return cell, subprocess.run(cmd, env=env, capture_output=True, text=True), time.perf_counter() - t0

    cells = [(seed, cap, threads) for seed in a.seeds for cap in caps for threads in a.threads]
    with ThreadPoolExecutor(a.jobs) as pool:  # the results do not depend on the load: each cell is one process
        for (seed, cap, threads), proc, secs in pool.map(one, cells):
            if proc.returncode != 0:
                print(f"| {seed} | {cap} | {threads} | failed: {proc.stderr.strip().splitlines()[-1]} |")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps({**r, "requested_cap": cap}) + "\n")
            row = []
            for t in cols:
                gap = r[f"{t}_pretrained"] - r[f"{t}_random"]
                gaps[t].append(gap)
                row.append(f"{r[f'{t}_pretrained']:.3f} / {r[f'{t}_random']:.3f} ({gap:+.3f})")
                if f"{t}_pretrained_curve" in r:  # fine-tuning: its mean top-1 over the epochs, what the test asserts
                    gap = r[f"{t}_pretrained_curve"] - r[f"{t}_random_curve"]
                    gaps.setdefault(f"{t} mean over epochs", []).append(gap)
                    row[-1] += f"; mean over epochs {gap:+.3f}"
            print(f"| {seed} | {cap} | {threads} | " + " | ".join(row) + f" | {secs:.0f} |", flush=True)
    for t, g in gaps.items():
        if g:
            print(f"# {t}: smallest gap {min(g):+.3f}, mean {sum(g) / len(g):+.3f} over {len(g)} cells")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
