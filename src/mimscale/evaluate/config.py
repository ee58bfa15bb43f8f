"""The evaluation config: one flat, typed dataclass for every task (defaults < YAML < ``key=value``).

Flat, so a study's eval entry and the command line name every setting the same way (``knn_k=20``); a
result's identity holds only the keys its task reads (``TASK_KEYS``), so a kNN result does not depend on
fine-tuning settings. Defaults are the paper's fine-tuning recipe (docs/METHOD.md, Fine-tuning and other
evaluations; SwinV2-B on ImageNet) and the probe settings of the demo study; ``finetune/*.yaml`` (packaged: ``-c finetune/linear-cpu.yaml``)
hold the shipped variants.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mimscale.config import DEVICE, FP16_INIT_SCALE, PRECISIONS, ConfigError, load_layered, merge
from mimscale.config_keys import (
    ANY_INTEGER,
    FLAG,
    MAPPING,
    PLAIN_NAME,
    SEED,
    TEXT,
    Check,
    at_least_zero,
    between,
    declarations,
    key,
    one_of,
    pair,
    positive,
)
from mimscale.rundir import identity_matches

TASKS = ("finetune", "linear", "knn", "segment")


# Which tasks read a key, i.e. what a result depends on. Speed and placement keys (device, threads,
# num_workers, accum_steps) and the result's file name are read by none: a finished evaluation is reused
# across them.
ALL = TASKS
FROZEN = ("linear", "knn")  # frozen-feature probes
TUNED = ("finetune", "segment")  # the encoder is trained
NOWHERE = ()


@dataclass
class EvalConfig:
    task: str = key("linear", "what is evaluated: finetune | linear | knn | segment", one_of(*TASKS), tasks=ALL)
    name: str = key("", "result file RUN_DIR/eval/<name>.json (a plain name: no '/' or '..'); empty: the task name",
                    PLAIN_NAME)

    # --- what is evaluated -------------------------------------------------------------------
    init: str = key("pretrained", "pretrained | random (the same encoder untrained: the baseline)",
                    one_of("pretrained", "random"), tasks=ALL)
    checkpoint: str = key("", "a checkpoint file; empty: the run's latest", TEXT, tasks=ALL)
    model: str = key("", "build this model name instead of the run's (the checkpoint must fit it)", TEXT, tasks=ALL)
    model_kwargs: dict[str, Any] = key({}, "model constructor keywords, e.g. `{window_size: 14}`", MAPPING, tasks=ALL)
    img_size: int = key(0, "image side in pixels; 0: the run's pre-training size", at_least_zero(), tasks=ALL)

    # --- data (see mimscale.data.build_source; segfolder:/path for image/mask pairs) ------------
    train_source: str = key("", "labelled training images; empty: a run pre-trained on a built-in source gets the "
                                "built-in shapes probe pool (2,000 images, from seeds disjoint from the pre-training "
                                "pool) at img_size, any other run its own pre-training source (a folder's "
                                "ROOT/train, tested on ROOT/val)", TEXT, tasks=ALL)
    test_source: str = key("", "test images; empty: the train_source's own validation split (or the built-in "
                               "shapes test pool of 1,000 images)", TEXT, tasks=ALL)
    num_classes: int = key(0, "0: from the data; > 0 is checked against it", at_least_zero(), tasks=ALL)
    batch_size: int = key(64, "global batch per step (fine-tuning: over all processes and accumulation) / per "
                              "forward", positive(), tasks=ALL)
    accum_steps: int = key(1, "fine-tuning: micro-batches per step and process (memory, not results)", positive())
    num_workers: int = key(0, "loader worker processes; 0: in the evaluating process", at_least_zero())

    # --- frozen-feature probes ---------------------------------------------------------------
    features: str = key("multiblock", "multiblock (every block, normalised, pooled, concatenated) | last",
                        one_of("multiblock", "last"), tasks=FROZEN)
    # The cache holds N_images x dim floats: all 24 blocks of SwinV2-B are 11,032 dims (56 GB for ImageNet-1K),
    # its last 4 are 3,072 (16 GB).
    feature_blocks: int = key(0, "multiblock: only the last N blocks; 0: all", at_least_zero(), tasks=FROZEN)
    probe: str = key("sgd", "sgd: BN + linear, an LR sweep in one pass | logistic: scikit-learn L-BFGS",
                     one_of("sgd", "logistic"), tasks=("linear",))
    linear_lrs: list[float] = key([0.01, 0.03, 0.1, 0.3, 1.0, 3.0], "learning rates swept by the sgd probe, per 256 "
                                  "images", Check(lambda v: len(v) > 0 and min(v) > 0,
                                                  "a non-empty list of positive learning rates"), tasks=("linear",))
    linear_epochs: int = key(100, "sgd probe epochs", positive(), tasks=("linear",))
    linear_batch_size: int = key(256, "sgd probe batch", positive(), tasks=("linear",))
    linear_weight_decay: float = key(0.0, "sgd probe weight decay", at_least_zero(), tasks=("linear",))
    linear_holdout: float = key(0.1, "fraction of the training features that picks the LR",
                                between(0, 1, False, True), tasks=("linear",))
    logistic_c: float = key(1.0, "logistic probe: inverse regularisation strength", positive(), tasks=("linear",))
    knn_k: int = key(20, "neighbours of the kNN classifier", positive(), tasks=("knn",))
    knn_t: float = key(0.07, "kNN vote temperature", positive(), tasks=("knn",))

    # --- fine-tuning (finetune and segment) ---------------------------------------------------
    epochs: int = key(100, "fine-tuning epochs", positive(), tasks=TUNED)
    warmup_epochs: float = key(20.0, "fine-tuning warmup epochs", at_least_zero(), tasks=TUNED)
    base_lr: float = key(1.25e-3, "peak learning rate per 512 images: lr = base_lr x batch_size / 512", positive(),
                         tasks=TUNED)
    warmup_lr: float = key(2.5e-7, "learning rate at the start of the warmup, per 512 images", at_least_zero(),
                           tasks=TUNED)
    min_lr: float = key(2.5e-7, "final learning rate, per 512 images", at_least_zero(), tasks=TUNED)
    # Added to change the default (since 7): results written before it used "scaled" and keep meaning that.
    lr_floor_rule: str = key("absolute", "finetune, per layer-decay group: absolute (the official timm schedule: "
                                         "the group's LR goes from warmup_lr up to base_lr x its layer scale and "
                                         "down to min_lr) | scaled (warmup_lr and min_lr are scaled by the layer "
                                         "scale too: mimscale before schema 7)", one_of("absolute", "scaled"),
                             tasks=("finetune",), since=7, before="scaled")
    weight_decay: float = key(0.05, "AdamW weight decay", at_least_zero(), tasks=TUNED)
    layer_decay: float = key(0.75, "layer-wise LR decay: block i of n gets layer_decay^(n - i)",
                             between(0, 1, True, False), tasks=TUNED)
    drop_path: float = key(0.1, "stochastic depth rate", between(0, 1, False, True), tasks=TUNED)
    clip_grad: float = key(5.0, "max global gradient norm; 0: off", at_least_zero("0: off"), tasks=TUNED)
    label_smoothing: float = key(0.1, "label smoothing", between(0, 1, False, True), tasks=("finetune",))
    mixup: float = key(0.8, "mixup Beta alpha; 0: off", at_least_zero("0: off"), tasks=("finetune",))
    cutmix: float = key(1.0, "cutmix Beta alpha; 0: off", at_least_zero("0: off"), tasks=("finetune",))
    mixup_prob: float = key(1.0, "probability of mixup or cutmix per batch", between(0, 1, False, False),
                            tasks=("finetune",))
    mixup_switch_prob: float = key(0.5, "probability of cutmix instead of mixup", between(0, 1, False, False),
                                   tasks=("finetune",))
    randaug_n: int = key(2, "RandAugment operations per image; 0: no RandAugment", at_least_zero(),
                         tasks=("finetune",))
    randaug_m: float = key(9.0, "RandAugment magnitude", at_least_zero(), tasks=("finetune",))
    randaug_mstd: float = key(0.5, "RandAugment magnitude noise (std)", at_least_zero(), tasks=("finetune",))
    reprob: float = key(0.25, "random erasing probability", between(0, 1, False, False), tasks=("finetune",))
    crop_scale: tuple[float, float] = key((0.08, 1.0), "random-resized-crop area range", pair(0.0, 1.0),
                                          tasks=("finetune",))
    hflip: bool = key(True, "random horizontal flips", FLAG, tasks=TUNED)
    eval_every: int = key(1, "epochs between evaluations (the last epoch is always evaluated)", positive(),
                          tasks=TUNED)
    # Added to change the default (since 7): results written before it kept the partial batch.
    drop_last: bool = key(True, "finetune: drop each epoch's last partial global batch, as the official train "
                                "loader (steps per epoch = images // batch_size); false: train on it too "
                                "(mimscale before schema 7)", FLAG, tasks=("finetune",), since=7, before=False)
    # The official ImageNet fine-tune: 0.875 (256 -> 224) and bicubic (finetune/finetune.yaml).
    test_crop: float = key(1.0, "test images: shorter side to img_size / test_crop, then a center crop of img_size",
                           between(0, 1, True, False), tasks=ALL, since=3)
    interpolation: str = key("bilinear", "resize interpolation of the test images (and the fine-tuning crops)",
                             one_of("bilinear", "bicubic"), tasks=ALL, since=3)
    jpeg_draft: bool = key(True, "classification images: decode large JPEGs at 1/2-1/8 scale in the DCT when the "
                                 "resize keeps >= img_size pixels per side (faster; a slightly different low-pass "
                                 "than the official full decode, which false gives)", FLAG,
                           tasks=("finetune", "linear", "knn"), since=7)
    precision: str = key("fp32", "fp32 | bf16 (autocast) | fp16 (autocast; fine-tuning adds a grad scaler)",
                         one_of(*PRECISIONS), tasks=ALL)
    fp16_init_scale: float = FP16_INIT_SCALE.field(tasks=TUNED)

    # --- segmentation -------------------------------------------------------------------------
    seg_width: int = key(64, "channels of the FPN head", positive(), tasks=("segment",))
    freeze_backbone: bool = key(False, "train the head only", FLAG, tasks=("segment",))
    ignore_index: int = key(255, "mask value left out of the loss and the score", ANY_INTEGER, tasks=("segment",))
    # The CPU configs map shapes' 10 shape classes to one: at 32 px a shape's class is not visible locally, so
    # tiny models cannot beat "all background" on the 12-class masks, while background / shape / occluder is
    # learnt.
    seg_label_map: dict[int, int] = key({}, "{mask value: class}: merge or rename classes (unlisted values keep "
                                            "their own)", MAPPING, tasks=("segment",))

    # --- where and how fast (not part of the result's identity) ----------------------------------
    seed: int = key(0, "seed of the head initialisation, data order and augmentations", SEED, tasks=ALL)
    device: str = key("auto", "auto | cpu | cuda | cuda:N", DEVICE)
    threads: int = key(0, "torch intra-op threads; 0: torch's default", at_least_zero("0: torch's default"))


# Every key's declaration; the tables below are derived from it.
KEYS = dict(declarations(EvalConfig))
# The keys each task reads, i.e. what its result depends on.
TASK_KEYS = {task: tuple(k for k, d in KEYS.items() if task in d.tasks) for task in TASKS}
# Keys added after the first release -> the value that reproduces the behaviour before them. At that value a
# key is left out of the identity, so results written before it existed stay valid.
ADDED_KEYS = {k: d.neutral for k, d in KEYS.items() if d.since}


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
    """Every key's own check: a one-line error for each bad value, then the checks that relate keys."""
    for name, decl in KEYS.items():
        decl.check(name, cfg[name])
    if cfg.task in TUNED and cfg.warmup_epochs > cfg.epochs:
        raise ConfigError(f"warmup_epochs {cfg.warmup_epochs:g} is longer than the fine-tuning (epochs {cfg.epochs})")


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


# Sources that ship with mimscale (generated or packaged). An evaluation uses the built-in shapes pools by
# default only where the run pre-trained on one of these; a run pre-trained on the user's images is evaluated
# on those images' own labelled splits, never silently on shapes.
BUILT_IN_SOURCES = ("shapes", "photos", "digits", "sample_images")


def is_built_in(source: str) -> bool:
    return str(source).strip().partition(":")[0] in BUILT_IN_SOURCES


def resolve_spec(spec: dict, pretrain_source: str) -> dict:
    """A study eval entry as one run evaluates it: without ``train_source``, a run pre-trained on a built-in
    source keeps the built-in shapes pools (the entry is returned as is, so its results keep their identity);
    any other run is evaluated on its pre-training source (``train_source`` = that source, whose validation
    split is the test set unless ``test_source`` is given: a folder's ROOT/train and ROOT/val)."""
    if spec.get("train_source") or is_built_in(pretrain_source):
        return spec
    return {**spec, "train_source": str(pretrain_source)}


def _source_text(d: dict) -> str:
    kind = d.get("kind", "?")
    if kind in BUILT_IN_SOURCES:
        return f"{kind} (built-in)"
    return f"{kind}:{d.get('path', '?')}"


def data_name(train: dict, test: dict) -> str:
    """An evaluation's data in words from its sources' ``describe()``: ``folder:/x (train / val)``,
    ``shapes (built-in) (probe / test)``; two different sources are both named."""
    def split(d: dict) -> str:
        s = d.get("split")
        return "all" if s in (None, "", "auto") else str(s)

    a, b = _source_text(train), _source_text(test)
    if a == b:
        return f"{a} ({split(train)} / {split(test)})"
    return f"{a} ({split(train)}) / {b} ({split(test)})"


@functools.lru_cache(maxsize=256)
def _spec_identity(spec_json: str) -> str:
    return json.dumps(identity(from_spec(json.loads(spec_json))), sort_keys=True)


def spec_identity(spec: dict) -> dict:
    """``identity(from_spec(spec))``, cached: ``study status`` asks it for every run."""
    return json.loads(_spec_identity(json.dumps(spec, sort_keys=True, default=str)))
