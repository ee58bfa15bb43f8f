"""The evaluation config: one flat, typed dataclass for every task (defaults < YAML < ``key=value``).

Flat, so a study's eval entry and the command line name every setting the same way (``knn_k=20``); a
result's identity holds only the keys its task reads (``TASK_KEYS``), so a kNN result does not depend on
fine-tuning settings. Defaults are the paper's fine-tuning recipe (docs/METHOD.md, Fine-tuning and other
evaluations; SwinV2-B on ImageNet) and the probe settings of the demo study; ``configs/finetune/*.yaml``
hold the shipped variants.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mimscale.config import ConfigError, load_layered, merge
from mimscale.rundir import identity_matches

TASKS = ("finetune", "linear", "knn", "segment")


@dataclass
class EvalConfig:
    task: str = "linear"  # finetune | linear | knn | segment
    name: str = ""  # result file RUN_DIR/eval/<name>.json; empty: the task name

    # --- what is evaluated -------------------------------------------------------------------
    init: str = "pretrained"  # pretrained | random (the same encoder untrained: the baseline)
    checkpoint: str = ""  # a checkpoint file; empty: the run's latest
    model: str = ""  # build this model name instead of the run's (the checkpoint must fit it)
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {window_size: 14}
    img_size: int = 0  # 0: the run's pre-training size

    # --- data (see mimscale.data.build_source; segfolder:/path for image/mask pairs) ------------
    # Empty: the built-in shapes probe pool (2,000 labelled images) and test pool (1,000), generated
    # from seeds disjoint from the pre-training pool, at img_size.
    train_source: str = ""
    test_source: str = ""  # empty with a train_source: that source's own validation split
    num_classes: int = 0  # 0: from the data; >0 is checked against it
    batch_size: int = 64  # global batch per step (fine-tuning: over all processes and accumulation) / per forward
    accum_steps: int = 1  # fine-tuning: micro-batches per step and process (memory, not results)
    num_workers: int = 0

    # --- frozen-feature probes ---------------------------------------------------------------
    features: str = "multiblock"  # multiblock (every block, normalised, pooled, concatenated) | last
    # multiblock: only the last N blocks (0 = all). The cache holds N_images x dim floats: all 24 blocks of
    # SwinV2-B are 11,032 dims (56 GB for ImageNet-1K), its last 4 are 3,072 (16 GB).
    feature_blocks: int = 0
    probe: str = "sgd"  # sgd: BN + linear, an LR sweep in one pass | logistic: scikit-learn L-BFGS
    linear_lrs: list[float] = field(default_factory=lambda: [0.01, 0.03, 0.1, 0.3, 1.0, 3.0])  # per 256
    linear_epochs: int = 100
    linear_batch_size: int = 256
    linear_weight_decay: float = 0.0
    linear_holdout: float = 0.1  # fraction of the training features that picks the LR
    logistic_c: float = 1.0
    knn_k: int = 20
    knn_t: float = 0.07

    # --- fine-tuning (finetune and segment) ---------------------------------------------------
    epochs: int = 100
    warmup_epochs: float = 20.0
    base_lr: float = 1.25e-3  # per 512 images; lr = base_lr * batch_size / 512
    warmup_lr: float = 2.5e-7  # per 512
    min_lr: float = 2.5e-7  # per 512
    weight_decay: float = 0.05
    layer_decay: float = 0.75
    drop_path: float = 0.1
    clip_grad: float = 5.0  # 0 = off
    label_smoothing: float = 0.1
    mixup: float = 0.8  # Beta alpha; 0 = off
    cutmix: float = 1.0  # Beta alpha; 0 = off
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    randaug_n: int = 2  # 0 = no RandAugment
    randaug_m: float = 9.0
    randaug_mstd: float = 0.5
    reprob: float = 0.25  # random erasing
    crop_scale: tuple[float, float] = (0.08, 1.0)
    hflip: bool = True
    eval_every: int = 1  # epochs between evaluations (the last epoch is always evaluated)
    # Test images: shorter side to img_size / test_crop, center crop img_size, with this interpolation. The
    # official ImageNet fine-tune: 0.875 (256 -> 224) and bicubic (configs/finetune/finetune.yaml).
    test_crop: float = 1.0
    interpolation: str = "bilinear"  # bilinear | bicubic
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fp16 (autocast; fine-tuning adds a grad scaler)
    fp16_init_scale: float = 65536.0  # fp16: the grad scaler's first loss scale (torch's, as the official code)

    # --- segmentation -------------------------------------------------------------------------
    seg_width: int = 64  # channels of the FPN head
    freeze_backbone: bool = False
    ignore_index: int = 255
    # {mask value: class}: merge or rename classes (unlisted values keep their own). The CPU configs map
    # shapes' 10 shape classes to one: at 32 px a shape's class is not visible locally, so tiny models
    # cannot beat "all background" on the 12-class masks, while background / shape / occluder is learnt.
    seg_label_map: dict[int, int] = field(default_factory=dict)

    # --- where and how fast (not part of the result's identity) ----------------------------------
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # torch intra-op threads; 0: torch's default


# The keys each task reads, i.e. what a result depends on. Speed and placement keys (device, threads,
# num_workers) and the result's file name are in none of them: a finished evaluation is reused across them.
_WHAT = ("task", "init", "checkpoint", "model", "model_kwargs", "img_size", "train_source", "test_source",
         "num_classes", "batch_size", "precision", "seed", "test_crop", "interpolation")
# Keys added after the first release -> the value that reproduces the behaviour before them. At that value a
# key is left out of the identity, so results written before it existed stay valid.
ADDED_KEYS = {"test_crop": 1.0, "interpolation": "bilinear", "fp16_init_scale": 65536.0}
_FROZEN = ("features", "feature_blocks")
_TUNED = ("epochs", "warmup_epochs", "base_lr", "warmup_lr", "min_lr", "weight_decay", "layer_decay", "drop_path",
          "clip_grad", "hflip", "eval_every", "fp16_init_scale")
_CLASSIFY = ("label_smoothing", "mixup", "cutmix", "mixup_prob", "mixup_switch_prob", "randaug_n", "randaug_m",
             "randaug_mstd", "reprob", "crop_scale")
TASK_KEYS = {
    "linear": _WHAT + _FROZEN + ("probe", "linear_lrs", "linear_epochs", "linear_batch_size",
                                 "linear_weight_decay", "linear_holdout", "logistic_c"),
    "knn": _WHAT + _FROZEN + ("knn_k", "knn_t"),
    "finetune": _WHAT + _TUNED + _CLASSIFY,
    "segment": _WHAT + _TUNED + ("seg_width", "freeze_backbone", "ignore_index", "seg_label_map"),
}


def load_eval_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                     base: EvalConfig | None = None) -> DictConfig:
    """Defaults (or ``base``) < YAML file < dotted ``key=value`` overrides -> a frozen DictConfig."""
    return load_layered(base or EvalConfig(), path, overrides, validate)


def as_eval_config(cfg: Any) -> DictConfig:
    """Accept an EvalConfig, a dict, a DictConfig or None (defaults) wherever a config is taken."""
    if isinstance(cfg, DictConfig):
        merged = merge(OmegaConf.structured(EvalConfig()), cfg, "config")
    elif isinstance(cfg, EvalConfig):
        merged = OmegaConf.structured(cfg)
    else:
        merged = merge(OmegaConf.structured(EvalConfig()), OmegaConf.create(cfg or {}), "config")
    validate(merged)
    OmegaConf.set_readonly(merged, True)
    return merged


def validate(cfg: DictConfig) -> None:
    if cfg.task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got '{cfg.task}'")
    if cfg.features not in ("multiblock", "last"):
        raise ConfigError(f"features must be 'multiblock' or 'last', got '{cfg.features}'")
    if cfg.probe not in ("sgd", "logistic"):
        raise ConfigError(f"probe must be 'sgd' or 'logistic', got '{cfg.probe}'")
    if cfg.init not in ("pretrained", "random"):
        raise ConfigError(f"init must be 'pretrained' or 'random', got '{cfg.init}'")
    if cfg.precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"precision must be fp32, bf16 or fp16, got '{cfg.precision}'")
    if not (math.isfinite(cfg.fp16_init_scale) and cfg.fp16_init_scale > 0):
        raise ConfigError(f"fp16_init_scale must be positive, got {cfg.fp16_init_scale}")
    if cfg.batch_size <= 0 or cfg.epochs <= 0 or cfg.knn_k <= 0 or cfg.linear_epochs <= 0 or cfg.accum_steps <= 0:
        raise ConfigError("batch_size, accum_steps, epochs, knn_k and linear_epochs must be positive")
    if not cfg.linear_lrs or min(cfg.linear_lrs) <= 0:
        raise ConfigError("linear_lrs must be a non-empty list of positive learning rates")
    if not 0.0 <= cfg.linear_holdout < 1.0:
        raise ConfigError(f"linear_holdout must be in [0, 1), got {cfg.linear_holdout}")
    if not 0.0 < cfg.crop_scale[0] <= cfg.crop_scale[1] <= 1.0:
        raise ConfigError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {list(cfg.crop_scale)}")
    if not 0.0 < cfg.test_crop <= 1.0:
        raise ConfigError(f"test_crop must be in (0, 1], got {cfg.test_crop}")
    if cfg.interpolation not in ("bilinear", "bicubic"):
        raise ConfigError(f"interpolation must be bilinear or bicubic, got '{cfg.interpolation}'")
    if cfg.img_size < 0 or cfg.num_classes < 0 or cfg.feature_blocks < 0:
        raise ConfigError("img_size, num_classes and feature_blocks must be >= 0")


def result_name(cfg: DictConfig) -> str:
    name = cfg.name or cfg.task
    if "/" in name or name.startswith("."):
        raise ConfigError(f"name must be a plain file name, got '{name}'")
    return name


def identity(cfg: DictConfig) -> dict:
    """The keys this task reads, JSON-normalised (tuples become lists) to compare with a stored result."""
    d = OmegaConf.to_container(cfg, resolve=True)
    keys = [k for k in TASK_KEYS[cfg.task] if not (k in ADDED_KEYS and d[k] == ADDED_KEYS[k])]
    return json.loads(json.dumps({k: d[k] for k in keys}))


def same_identity(stored: dict | None, cfg: DictConfig) -> bool:
    """Whether a stored result's identity is this request's (see ``rundir.identity_matches``)."""
    return identity_matches(stored, identity(cfg))


def from_spec(spec: dict, threads: int = 0) -> DictConfig:
    """A study's eval entry (a mapping of EvalConfig keys, as in the study file) -> the evaluation config."""
    overrides = [f"{k}={json.dumps(v, default=str)}" for k, v in spec.items()]  # JSON is YAML: types survive
    return load_eval_config(None, overrides + ([f"threads={threads}"] if threads > 0 else []))


@functools.lru_cache(maxsize=256)
def _spec_identity(spec_json: str) -> str:
    return json.dumps(identity(from_spec(json.loads(spec_json))), sort_keys=True)


def spec_identity(spec: dict) -> dict:
    """``identity(from_spec(spec))``, cached: ``study status`` asks it for every run."""
    return json.loads(_spec_identity(json.dumps(spec, sort_keys=True, default=str)))
