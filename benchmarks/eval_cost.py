"""Cost of the held-out + training-probe evaluation relative to training, in the demo setting.

Direct mode (default): for each model, build the demo's inputs (32 px shapes, batch 64, val_size 1000,
probe_size 500, 1 thread) with ``RunInputs``, time one evaluation (``reconstruction_loss`` over the
held-out and probe sets) and ``--steps`` training steps (loader + ``train_step``), and report the eval
time as a fraction of the training time between two evaluations (iters / eval_points steps) and of a
whole run (eval_points + 1 evaluations, the step-0 one included).

``--from-runs DIR``: instead derive it from finished runs' metrics.jsonl: each eval's time is the gap
between the last "train" line before it and its "val" line (the val line is written after both losses).

    .venv/bin/python benchmarks/eval_cost.py --models vit-cpu-l,swinv2-cpu-l
    .venv/bin/python benchmarks/eval_cost.py --from-runs runs/demo/runs
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def demo_cfg(val_size: int, probe_size: int):
    from omegaconf import OmegaConf

    return OmegaConf.create({
        "seed": 0,
        "data": dict(source="shapes:size=32,pool=1000,seed=0,val_pool=1000", val_source=None, fraction=1.0,
                     subset_seed=0, img_size=32, mask_patch_size=8, mask_ratio=0.6, crop_scale=[1.0, 1.0],
                     crop_ratio=[1.0, 1.0], hflip=True, num_workers=0, val_size=val_size,
                     probe_size=probe_size, val_mask_seed=0),
    })


def direct(model_name: str, batch: int, steps: int, evals: int, iters: int, eval_points: int,
           val_size: int, probe_size: int, budget: float) -> dict:
    from mimscale.models import build_model
    from mimscale.objectives.simmim import SimMIM
    from mimscale.train.inputs import RunInputs
    from mimscale.train.optim import pretrain_optimizer
    from mimscale.train.schedule import budgeted_eval_points
    from mimscale.train.step import reconstruction_loss, train_step

    device = torch.device("cpu")
    torch.manual_seed(0)
    enc = build_model(model_name, img_size=32)
    model = SimMIM(enc).train()
    opt = pretrain_optimizer(model, 1e-4, 0.05, (0.9, 0.999), 1e-8)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = RunInputs(demo_cfg(val_size, probe_size), batch, 0, 1, Path(tmp), enc.patch_size)
        for _ in range(3):  # warm-up
            train_step(model, opt, [inputs.next_train()], 1e-4, 5.0, device, "fp32")
        reconstruction_loss(model, inputs.val_batches(), device, "fp32")
        t_eval = []
        for _ in range(evals):
            t0 = time.perf_counter()
            reconstruction_loss(model, inputs.val_batches(), device, "fp32")
            reconstruction_loss(model, inputs.probe_batches(), device, "fp32")
            t_eval.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(steps):
            train_step(model, opt, [inputs.next_train()], 1e-4, 5.0, device, "fp32")
        t_step = (time.perf_counter() - t0) / steps
    te = statistics.median(t_eval)
    # The points a run actually evaluates at: train.eval_budget thins them for short runs.
    eval_points = budgeted_eval_points(eval_points, iters, batch, val_size + probe_size, budget)
    interval = iters // eval_points
    return {"model": model_name, "eval_s": te, "step_s": t_step, "interval": interval, "points": eval_points,
            "frac_interval": te / (interval * t_step),
            "frac_run": (eval_points + 1) * te / (iters * t_step)}


def from_runs(root: Path) -> list[dict]:
    import yaml

    out = []
    for run in sorted(p for p in root.iterdir() if (p / "metrics.jsonl").exists()):
        recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        last_train, gaps, seen = None, [], set()
        for r in recs:
            if r["split"] == "train":
                last_train = r["time"]
            elif r["split"] == "val" and r["step"] not in seen:
                seen.add(r["step"])
                if last_train is not None:
                    gaps.append(r["time"] - last_train)
        if not gaps:
            continue
        total = recs[-1]["time"] - recs[0]["time"]  # from the step-0 eval's line to the end
        e_after0 = sum(gaps)
        train = total - e_after0  # training incl. logging, pictures, checkpoints
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        out.append({"run": run.name, "model": cfg["model"]["name"], "iters": cfg["train"]["iters"],
                    "fraction": cfg["data"]["fraction"], "eval_s": statistics.median(gaps), "n_eval": len(gaps) + 1,
                    "frac_run": (e_after0 + statistics.median(gaps)) / train})
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="vit-cpu-l,swinv2-cpu-l")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=40, help="timed training steps")
    ap.add_argument("--evals", type=int, default=3, help="timed evaluations (median)")
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--eval-points", type=int, default=10)
    ap.add_argument("--eval-budget", type=float, default=0.05, help="train.eval_budget (0 = no cap)")
    ap.add_argument("--val-size", type=int, default=1000)
    ap.add_argument("--probe-size", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--from-runs", type=Path, default=None, help="derive from these runs' metrics.jsonl")
    args = ap.parse_args(argv)
    if args.from_runs:
        rows = from_runs(args.from_runs)
        print(f"{'run':<11} {'model':<10} {'iters':>5} {'frac':>5} {'evals':>5} {'eval s':>7} {'eval/train':>10}")
        for r in rows:
            print(f"{r['run']:<11} {r['model']:<10} {r['iters']:>5} {r['fraction']:>5} {r['n_eval']:>5} "
                  f"{r['eval_s']:>7.3f} {100 * r['frac_run']:>9.1f}%")
        if rows:
            print(f"max eval/train {100 * max(r['frac_run'] for r in rows):.1f}%, "
                  f"median {100 * statistics.median(r['frac_run'] for r in rows):.1f}%")
        return
    torch.set_num_threads(args.threads)
    print(f"threads {torch.get_num_threads()}, batch {args.batch}, val {args.val_size} + probe {args.probe_size}, "
          f"up to {args.eval_points} eval points over {args.iters} iters, eval_budget {args.eval_budget:g}")
    print(f"{'model':<13} {'eval s':>7} {'step ms':>8} {'points':>6} {'eval/interval':>13} {'eval/run':>9}")
    for name in args.models.split(","):
        r = direct(name.strip(), args.batch, args.steps, args.evals, args.iters, args.eval_points,
                   args.val_size, args.probe_size, args.eval_budget)
        print(f"{r['model']:<13} {r['eval_s']:>7.3f} {1000 * r['step_s']:>8.1f} {r['points']:>6} "
              f"{100 * r['frac_interval']:>12.1f}% {100 * r['frac_run']:>8.1f}%", flush=True)


if __name__ == "__main__":
    main()
