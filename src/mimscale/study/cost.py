"""Cost of a study before running it: images processed and training FLOPs per run.

FLOPs per image are counted by torch's flop counter on one forward of the SimMIM model built on the meta
device (shapes only: a 1B-parameter model costs no memory and about a second), so they follow the model
code instead of a formula; training = 3 x forward (the backward of a matmul or conv costs twice its
forward), within 1% of counting the backward too and three times faster to plan. Anything that fails
(a model family that cannot run on meta, an import that is not there yet) degrades to None, shown as
"n/a": the plan is still useful without it. ``eval_flops`` counts the evaluations the same way, and
``estimate_seconds`` turns FLOPs into a rough time on this machine.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache

from omegaconf import DictConfig

from mimscale.study.spec import StudyRun, images_of


def _build_simmim(cfg: DictConfig):
    try:
        from mimscale.train import build_simmim
    except ImportError:  # the training package is optional here: the same construction, by hand
        from mimscale.models import build_model
        from mimscale.objectives.simmim import SimMIM

        def build_simmim(cfg):
            enc = build_model(cfg.model.name, img_size=cfg.data.img_size,
                              drop_path_rate=cfg.model.drop_path_rate, **cfg.model.kwargs)
            return SimMIM(enc, norm_target=cfg.objective.norm_target,
                          norm_target_window=cfg.objective.norm_target_window)
    return build_simmim(cfg)


@lru_cache(maxsize=64)
def _model_cost(key: str) -> tuple[float | None, int | None]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mimscale.config import load_config

    values = json.loads(key)
    cfg = load_config(None, [f"{k}={json.dumps(v)}" for k, v in values.items()] + ["train.iters=1"])
    try:
        with torch.device("meta"):
            model = _build_simmim(cfg)
            size = cfg.data.img_size
            grid = size // model.encoder.patch_size
            img, mask = torch.empty(1, 3, size, size), torch.zeros(1, grid, grid)
    except Exception:  # noqa: BLE001 - a plan must not fail because a model cannot be built on meta
        return None, None
    params = sum(p.numel() for p in model.encoder.parameters())
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(img, mask)
        return 3.0 * float(counter.get_total_flops()), params
    except Exception:  # noqa: BLE001
        return None, params


def model_cost(cfg: DictConfig) -> tuple[float | None, int | None]:
    """(training FLOPs per image, backbone parameters) of a run's model; None where unknown."""
    # Only what shapes the model enters the cache key, so a grid over data and length builds each model once.
    values = {"model": {"name": cfg.model.name, "drop_path_rate": cfg.model.drop_path_rate,
                        "kwargs": dict(cfg.model.kwargs)},
              "data": {"img_size": cfg.data.img_size, "mask_patch_size": cfg.data.mask_patch_size},
              "objective": {"norm_target": cfg.objective.norm_target,
                            "norm_target_window": cfg.objective.norm_target_window}}
    try:
        return _model_cost(json.dumps(values, sort_keys=True, default=str))
    except Exception:  # noqa: BLE001
        return None, None


@lru_cache(maxsize=64)
def _model_params(key: str) -> int | None:
    import torch

    from mimscale.config import load_config

    values = json.loads(key)
    cfg = load_config(None, [f"{k}={json.dumps(v)}" for k, v in values.items()] + ["train.iters=1"])
    try:
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            return sum(p.numel() for p in _build_simmim(cfg).parameters())
    except Exception:  # noqa: BLE001 - an unknown model is reported by the study's checks, not here
        return None


def checkpoint_params(cfg: DictConfig) -> int | None:
    """Parameters a pre-training checkpoint holds (encoder and decoder); None where the model cannot be built."""
    values = {"model": {"name": cfg.model.name, "kwargs": dict(cfg.model.kwargs)},
              "data": {"img_size": cfg.data.img_size, "mask_patch_size": cfg.data.mask_patch_size}}
    try:
        return _model_params(json.dumps(values, sort_keys=True, default=str))
    except Exception:  # noqa: BLE001
        return None


# A checkpoint holds fp32 weights and AdamW's two fp32 moments per parameter; the scaler, sampler and RNG states
# are a few kilobytes.
CHECKPOINT_BYTES_PER_PARAM = 3 * 4


def run_cost(run: StudyRun, flops: bool = True) -> dict:
    images = images_of(run.cfg)
    per_image, params = model_cost(run.cfg) if flops else (None, None)
    total = images * per_image if images is not None and per_image is not None else None
    return {"images": images, "flops_per_image": per_image, "flops": total, "params": params}


def eval_flops(task: str, train_images: int, test_images: int, epochs: int, flops_per_image: float | None,
               size_ratio: float = 1.0) -> float | None:
    """FLOPs of one evaluation from the pre-training model's training FLOPs per image (3 forwards) at the
    evaluation's image size (``size_ratio``: its side over the pre-training side; cost grows with the area).
    Frozen probes (knn, linear) run one forward over the train and test images (the probe on top is
    negligible); fine-tuning trains on the train images for ``epochs`` and tests once per epoch."""
    if flops_per_image is None:
        return None
    train_f = flops_per_image * size_ratio ** 2
    forward = train_f / 3
    if task in ("knn", "linear"):
        return forward * (train_images + test_images)
    return epochs * (train_f * train_images + forward * test_images)


# Share of this machine's measured matmul speed that training reaches: about 65% for the larger CPU models
# (BENCHMARKS.md, MFU), less for the smallest ones and for evaluation's loaders; a plan is an estimate.
ASSUMED_UTILISATION = 0.3
# Seconds each run spends outside its FLOPs: a worker process starting, imports, the model and data built, the
# held-out set screened, checkpoints written. It dominates the tiniest runs.
RUN_OVERHEAD_S = 10.0


@lru_cache(maxsize=1)
def machine_flops_per_s() -> float | None:
    """This machine's fp32 matmul speed (FLOP/s) on its CPU threads, measured in about 0.1 s; None if it fails."""
    import time

    import torch

    try:
        a = torch.randn(512, 512)
        torch.mm(a, a)  # warm-up
        n, start = 0, time.perf_counter()
        while n < 3 or time.perf_counter() - start < 0.05:
            torch.mm(a, a)
            n += 1
        return 2 * 512 ** 3 * n / (time.perf_counter() - start)
    except Exception:  # noqa: BLE001 - the estimate is optional
        return None


def estimate_seconds(flops: float | None, runs: int = 0) -> float | None:
    """Seconds for ``flops`` on this machine at ``ASSUMED_UTILISATION`` of its matmul speed, plus
    ``RUN_OVERHEAD_S`` for each of ``runs``; None when unknown."""
    speed = machine_flops_per_s() if flops is not None else None
    return flops / (speed * ASSUMED_UTILISATION) + runs * RUN_OVERHEAD_S if speed else None


SI = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"))  # FLOPs, bytes
COUNTS = ((1e9, "B"), (1e6, "M"), (1e3, "k"))  # parameters and images, as papers write them: 1.24B, 38k


def human(n: float | None, unit: str = "", counts: bool = False) -> str:
    """1234567 -> '1.23M'; None -> 'n/a'. ``counts``: parameter and image counts (38000 -> '38k', 1.24e9 ->
    '1.24B'); else SI prefixes for FLOPs and bytes (2.1e12 -> '2.1T')."""
    if n is None:
        return "n/a"
    if not counts and abs(n) >= 1e18:  # beyond "E" scientific notation reads better than a rare prefix
        return f"{n:.3g}{unit}"
    for scale, suffix in COUNTS if counts else SI:
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}{unit}"
    return f"{n:g}{unit}" if counts else f"{n:.3g}{unit}"


def clock(seconds: float | None) -> str:
    """3725 -> '1:02:05'; None or not finite -> '-'."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def duration(seconds: float | None) -> str:
    """A planned time: ``clock`` up to two days, then days, then years (a cluster's grid planned on a laptop)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 2 * 86400:
        return clock(seconds)
    days = seconds / 86400
    return f"{days:.3g} days" if days < 730 else f"{days / 365.25:.3g} years"
