"""Peak memory of one SimMIM train step per CPU preset, and whether RSS grows over a long run.

Each preset runs in its own subprocess (so peaks do not mix): build the demo inputs (32 px shapes, batch 64,
loader with 0 workers, as the demo), take 2 warm-up steps, reset the peak (``/proc/self/clear_refs``), run
one step and read VmHWM; then run ``--steps`` more steps and sample VmRSS. Numbers are from
/proc/self/status (Linux), in MiB.

    .venv/bin/python benchmarks/memory.py --steps 200
    .venv/bin/python benchmarks/memory.py --presets "" --paper swinv2-s,swinv2-b,swinv2-l --paper-batch 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

PRESETS = "swinv2-cpu-t,swinv2-cpu-s,swinv2-cpu-m,swinv2-cpu-l,vit-cpu-s,vit-cpu-m,vit-cpu-l"
# The paper's presets run at their own 192 px on random images (``--paper-batch``), one measured step, no growth.
PAPER = ("swinv2-s", "swinv2-b", "swinv2-l", "swinv2-h", "swinv2-g")


def _status(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # kB -> MiB
    raise KeyError(key)


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def child(preset: str, batch: int, steps: int) -> dict:
    import torch
    from omegaconf import OmegaConf

    from mimscale.models import build_model
    from mimscale.objectives.simmim import SimMIM
    from mimscale.train.inputs import RunInputs
    from mimscale.train.optim import pretrain_optimizer
    from mimscale.train.step import train_step

    torch.set_num_threads(1)
    device = torch.device("cpu")
    cfg = OmegaConf.create({"seed": 0, "data": dict(
        source="shapes:size=32,pool=1000,seed=0,val_pool=1000", val_source=None, fraction=1.0, subset_seed=0,
        img_size=32, mask_patch_size=8, mask_ratio=0.6, crop_scale=[1.0, 1.0], crop_ratio=[1.0, 1.0],
        hflip=True, num_workers=0, val_size=1000, probe_size=500, val_mask_seed=0)})
    rss_start = _status("VmRSS")
    torch.manual_seed(0)
    paper = preset in PAPER
    enc = build_model(preset) if paper else build_model(preset, img_size=32)
    model = SimMIM(enc).train()
    opt = pretrain_optimizer(model, 1e-4, 0.05, (0.9, 0.999), 1e-8)
    with tempfile.TemporaryDirectory() as tmp:
        if paper:  # 192 px random images with the paper's 32 px mask units; no loader
            from _common import masked_batch

            fixed = masked_batch(batch, enc.img_size, enc.patch_size)
            next_batch = lambda: fixed  # noqa: E731
        else:
            next_batch = RunInputs(cfg, batch, 0, 1, Path(tmp), enc.patch_size).next_train
        for _ in range(1 if paper else 2):  # the first step allocates the AdamW state
            train_step(model, opt, [next_batch()], 1e-4, 5.0, device, "fp32")
        rss_before = _status("VmRSS")
        reset = _reset_peak()
        train_step(model, opt, [next_batch()], 1e-4, 5.0, device, "fp32")
        hwm = _status("VmHWM")
        samples = {}
        for i in range(1, steps + 1):
            train_step(model, opt, [next_batch()], 1e-4, 5.0, device, "fp32")
            if i in (10, steps // 2, steps):
                samples[i] = _status("VmRSS")
    return {"preset": preset, "params_M": sum(p.numel() for p in enc.parameters()) / 1e6,
            "rss_start": rss_start, "rss_before": rss_before, "hwm_step": hwm, "peak_reset": reset,
            "rss": samples, "hwm_run": _status("VmHWM")}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default=PRESETS)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--paper", default="", help=f"also these of {', '.join(PAPER)} at 192 px (one step each)")
    ap.add_argument("--paper-batch", type=int, default=8)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.batch, args.steps)))
        return
    for preset in filter(None, args.paper.split(",")):
        out = subprocess.run([sys.executable, __file__, "--child", preset, "--batch", str(args.paper_batch),
                              "--steps", "0"], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{preset:<9} {r['params_M']:>8.2f}M 192 px batch {args.paper_batch}: RSS steady {r['rss_before']:>7.0f} "
              f"MiB, step peak {r['hwm_step']:>7.0f} MiB" + ("" if r["peak_reset"] else "  (peak not reset)"),
              flush=True)
    if not args.presets:
        return
    n = args.steps
    print(f"batch {args.batch}, fp32, 1 thread, demo inputs (32 px shapes, 0 workers); MiB from /proc/self/status")
    print(f"{'preset':<13} {'params':>7} {'RSS import':>10} {'RSS steady':>10} {'step peak':>9} {'+step':>6} "
          f"{'RSS@10':>7} {f'RSS@{n // 2}':>8} {f'RSS@{n}':>8} {'growth':>7}")
    for preset in args.presets.split(","):
        out = subprocess.run([sys.executable, __file__, "--child", preset, "--batch", str(args.batch),
                              "--steps", str(n)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rss = {int(k): v for k, v in r["rss"].items()}
        print(f"{preset:<13} {r['params_M']:>6.3f}M {r['rss_start']:>10.0f} {r['rss_before']:>10.0f} "
              f"{r['hwm_step']:>9.0f} {r['hwm_step'] - r['rss_before']:>6.0f} {rss[10]:>7.0f} {rss[n // 2]:>8.0f} "
              f"{rss[n]:>8.0f} {rss[n] - rss[10]:>+7.1f}" + ("" if r["peak_reset"] else "  (peak not reset)"),
              flush=True)


if __name__ == "__main__":
    main()
