"""What two recipe switches cost or change, measured on this machine.

1. ``data.jpeg_draft``: decoding large JPEGs at reduced scale in the DCT. Speed of the pre-training transform
   (192 px RandomResizedCrop, scale 0.67-1) with and without it, on synthetic 1024x768 and 500x375 photos, and
   its effect on the normalised SimMIM target and on the held-out loss of one model (same images, same masks).
2. ``train.decay_position_bias``: weight decay on the Swin V2 continuous-position-bias MLP and logit scales
   (the official pre-training) vs exempting them: final held-out loss of the same CPU-preset run both ways.

    python benchmarks/recipe.py [--images 96] [--iters 400]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mimscale.cli import main
from mimscale.data import EvalTransform, TrainTransform
from mimscale.masking import MaskGenerator
from mimscale.models import build_model
from mimscale.objectives.simmim import SimMIM, normalize_target
from mimscale.rundir import RunDir


def _photo(w: int, h: int, rng: np.random.Generator) -> bytes:
    """A photo-like JPEG: smooth colour fields, edges and fine texture (quality 90)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(xx * rng.uniform(3, 9) + rng.uniform(0, 6)) for _ in range(3)], -1)
    base += 0.4 * (xx[..., None] > rng.uniform(0.2, 0.8)) + 0.15 * rng.standard_normal((h, w, 3))
    arr = ((base - base.min()) / (np.ptp(base) + 1e-9) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _time(fn, files: list[bytes], rounds: int = 3) -> float:
    """Images per second of ``fn(PIL image)``, best of ``rounds`` (files reopened each time: lazy decode)."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for b in files:
            fn(Image.open(io.BytesIO(b)))
        best = min(best, time.perf_counter() - t0)
    return len(files) / best


def jpeg_draft(n: int) -> None:
    rng = np.random.default_rng(0)
    for w, h in ((1024, 768), (500, 375)):
        files = [_photo(w, h, rng) for _ in range(n)]
        speeds = {}
        for draft in (False, True):
            tf = TrainTransform(192, scale=(0.67, 1.0), draft=draft)
            seeds = iter(range(10**9))
            speeds[draft] = _time(lambda img, tf=tf, seeds=seeds: tf(img, np.random.default_rng(next(seeds))), files)
        print(f"jpeg_draft {w}x{h}: train transform {speeds[False]:.0f} -> {speeds[True]:.0f} img/s "
              f"(x{speeds[True] / speeds[False]:.2f})")
        full = torch.stack([EvalTransform(192, draft=False)(Image.open(io.BytesIO(b))) for b in files])
        draft = torch.stack([EvalTransform(192, draft=True)(Image.open(io.BytesIO(b))) for b in files])
        t_full, t_draft = normalize_target(full, 47), normalize_target(draft, 47)
        rel = float((t_full - t_draft).abs().mean() / t_full.abs().mean())
        torch.manual_seed(0)
        model = SimMIM(build_model("swinv2-cpu-s", img_size=192), norm_target=True).eval()
        masks = MaskGenerator(192, 32, 4, 0.6)
        mask = torch.stack([torch.from_numpy(masks(np.random.default_rng(i))) for i in range(len(files))])
        with torch.no_grad():
            lf, ld = float(model(full, mask).loss), float(model(draft, mask).loss)
        print(f"jpeg_draft {w}x{h}: normalised target differs by {rel:.2%} of its mean magnitude; held-out loss "
              f"of a random-init swinv2-cpu-s at 192 px {lf:.5f} (full) vs {ld:.5f} (draft), {ld - lf:+.5f}")


def decay_position_bias(iters: int) -> None:
    common = ["model.name=swinv2-cpu-s", "model.drop_path_rate=0", "data.source=shapes:size=32,pool=1000,seed=0",
              "data.val_size=500", "data.probe_size=200", "train.batch_size=64", f"train.iters={iters}",
              "train.base_lr=8e-3", "train.eval_points=4", "train.recon_images=0", "objective.norm_target=false",
              "threads=1"]
    with tempfile.TemporaryDirectory() as tmp:
        losses = {}
        for decay in (False, True):
            run = Path(tmp) / str(decay)
            assert main(["pretrain", *common, f"train.decay_position_bias={str(decay).lower()}", f"run_dir={run}"]) == 0
            losses[decay] = RunDir(run).read_summary()["final_val_loss"]
        print(f"decay_position_bias on swinv2-cpu-s, {iters} iterations at batch 64: held-out loss "
              f"{losses[False]:.5f} (exempt) vs {losses[True]:.5f} (decayed, official), {losses[True] - losses[False]:+.5f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=96)
    p.add_argument("--iters", type=int, default=400)
    a = p.parse_args()
    torch.set_num_threads(1)
    jpeg_draft(a.images)
    decay_position_bias(a.iters)
