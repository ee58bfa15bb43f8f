"""Loader benchmark: images/s per worker process for JPEG decode + RandomResizedCrop(192) + flip +
normalise, mimscale's TrainTransform vs a naive full-decode PIL pipeline, in one run.

    .venv/bin/python benchmarks/loader.py [--images 64] [--rounds 5] [--size 192] [--workers 0]

The script writes ImageNet-like JPEGs (about 500x375, some portrait, quality 90, photo-like
multi-scale content) to a temporary folder. Both pipelines draw the same crop boxes and flips from
the same seeds (``rrc_params``), run single-threaded in one process (= one DataLoader worker), and
are timed in interleaved rounds; the table shows the median round. ``--workers N`` also times a
DataLoader with N worker processes over each pipeline.

The naive pipeline is what a torchvision-free script usually does: ``Image.open().convert("RGB")``
(full decode), ``crop``, ``resize(BILINEAR)``, ``transpose`` for the flip, ``np.asarray / 255`` and
``(x - mean) / std``. Ours: JPEG draft decode when the crop allows it, uint8 antialiased bilinear
resize in torch, flip on uint8, one fused normalisation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mimscale.data import IMAGENET_MEAN, IMAGENET_STD, TrainTransform, rrc_params

SIZES = [(500, 375), (500, 333), (375, 500), (500, 375), (480, 360), (500, 400)]


def make_jpegs(folder: Path, n: int) -> list[Path]:
    """Photo-like images: multi-scale smooth colour fields, a few hard-edged shapes, sensor noise."""
    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        w, h = SIZES[i % len(SIZES)]
        img = np.zeros((h, w, 3), dtype=np.float32)
        for cells, amp in [(3, 120.0), (8, 50.0), (24, 30.0), (64, 25.0), (160, 20.0)]:
            field = rng.random((cells, max(2, cells * w // h), 3)).astype(np.float32)
            up = Image.fromarray((field * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
            img += (np.asarray(up, dtype=np.float32) / 255.0 - 0.5) * amp
        img += 128.0
        yy, xx = np.mgrid[0:h, 0:w]
        for _ in range(6):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(15, 90)
            inside = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
            img[inside] = img[inside] * 0.4 + rng.uniform(0, 255, 3) * 0.6
        img += rng.normal(0, 7.0, img.shape)
        p = folder / f"img_{i:04d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p, "JPEG", quality=90)
        paths.append(p)
    return paths


class NaivePipeline:
    """Full decode + PIL crop/resize/flip + float numpy normalisation (same crop and flip draws)."""

    def __init__(self, size: int, scale=(0.67, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size, self.scale, self.ratio = size, scale, ratio
        self.mean = np.array(IMAGENET_MEAN, dtype=np.float32)
        self.std = np.array(IMAGENET_STD, dtype=np.float32)

    def __call__(self, path, rng: np.random.Generator) -> torch.Tensor:
        img = Image.open(path).convert("RGB")
        top, left, h, w = rrc_params(img.height, img.width, self.scale, self.ratio, rng)
        flip = rng.random() < 0.5
        img = img.crop((left, top, left + w, top + h)).resize((self.size, self.size), Image.BILINEAR)
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        x = np.asarray(img, dtype=np.float32) / 255.0
        x = (x - self.mean) / self.std
        return torch.from_numpy(x.transpose(2, 0, 1).copy())


class OursPipeline:
    def __init__(self, size: int, draft: bool = True):
        self.t = TrainTransform(size, draft=draft)

    def __call__(self, path, rng: np.random.Generator) -> torch.Tensor:
        with Image.open(path) as img:
            return self.t(img, rng)


def time_round(fn, paths, seed: int) -> float:
    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        fn(p, np.random.default_rng([seed, i]))
    return len(paths) / (time.perf_counter() - t0)


class _Files(torch.utils.data.Dataset):
    def __init__(self, paths, fn):
        self.paths, self.fn = paths, fn

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.fn(self.paths[i], np.random.default_rng([0, i]))


def time_dataloader(fn, paths, workers: int, repeats: int = 3) -> float:
    dl = torch.utils.data.DataLoader(_Files(paths * repeats, fn), batch_size=32, num_workers=workers,
                                     worker_init_fn=lambda _: torch.set_num_threads(1))  # fmt: skip
    it = iter(dl)
    next(it)  # start-up excluded
    t0, n = time.perf_counter(), 0
    for b in it:
        n += len(b)
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--workers", type=int, default=0, help="also time a DataLoader with this many workers")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_jpegs(Path(tmp), args.images)
        kb = np.mean([p.stat().st_size for p in paths]) / 1e3
        pipes = {
            "naive PIL (full decode)": NaivePipeline(args.size),
            "mimscale TrainTransform": OursPipeline(args.size),
            "mimscale, draft off": OursPipeline(args.size, draft=False),
        }
        # same boxes and flips -> outputs should agree up to resampling differences
        grey = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255.0  # normalised units -> grey levels
        diffs = [((pipes["mimscale TrainTransform"](p, np.random.default_rng([9, i]))
                   - pipes["naive PIL (full decode)"](p, np.random.default_rng([9, i]))) * grey).abs().mean().item()
                 for i, p in enumerate(paths[:16])]  # fmt: skip
        for fn in pipes.values():  # warm-up
            time_round(fn, paths[:8], 123)
        rates: dict[str, list[float]] = {k: [] for k in pipes}
        for r in range(args.rounds):
            for name, fn in pipes.items():
                rates[name].append(time_round(fn, paths, r))
        loader_rates = {}
        if args.workers:
            for name in ("naive PIL (full decode)", "mimscale TrainTransform"):
                loader_rates[name] = time_dataloader(pipes[name], paths, args.workers)

    naive = statistics.median(rates["naive PIL (full decode)"])
    print(f"{args.images} JPEGs, ~500x375, mean {kb:.0f} kB; RandomResizedCrop({args.size}, scale=(0.67, 1)) "
          f"+ flip + normalise; 1 thread; median of {args.rounds} rounds")  # fmt: skip
    print(f"torch {torch.__version__}, Pillow {Image.__version__}, python {sys.version.split()[0]}")
    print()
    print(f"| {'pipeline':<26} | {'img/s per worker':>16} | {'ms/img':>7} | {'vs naive':>8} |")
    print(f"|{'-' * 28}|{'-' * 18}|{'-' * 9}|{'-' * 10}|")
    for name in pipes:
        med = statistics.median(rates[name])
        print(f"| {name:<26} | {med:>16.0f} | {1e3 / med:>7.2f} | {med / naive:>7.2f}x |")
    if loader_rates:
        print()
        for name, v in loader_rates.items():
            print(f"DataLoader, {args.workers} workers, {name}: {v:.0f} img/s")
    ratio = statistics.median(rates["mimscale TrainTransform"]) / naive
    print()
    print(f"ratio ours / naive = {ratio:.2f}x (target >= 1.5x); "
          f"mean |ours - naive| = {statistics.mean(diffs):.3f} grey levels (same boxes and flips)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
