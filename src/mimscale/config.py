"""Typed, nested run configuration: defaults < YAML file < dotted overrides, validated and frozen.

OmegaConf structured configs do the merging, type checking and ``key=value`` parsing; this module
adds one-line errors (an unknown key names the closest valid one) and the run identity hash.

Run identity survives upgrades: a key added to the schema after version 1 is listed in ``ADDED_KEYS`` with
the value that keeps the old behaviour; at that value it is left out of the hash, so every run id computed
before the key existed stays the same (and a run directory or study directory of the older version is
still recognised). Only a value that changes what a run computes changes its id.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mimscale.errors import ConfigError

__all__ = ["Config", "ConfigError", "load_config", "load_layered", "merge", "validate", "run_id", "identity",
           "to_container", "dump_yaml", "SCHEMA_VERSION", "ADDED_KEYS", "NON_IDENTITY_KEYS"]

# Version of the config schema; written to provenance.json. Bump it when a key is added (and list that key
# in ADDED_KEYS with its neutral value) or when a default changes what runs compute.
# 2: train.divergence_factor (a guard, not identity); 3: data.jpeg_draft, train.decay_position_bias;
# 4: the wsd schedule (train.decay_fraction, train.decay_shape); train.share_with, train.branch_from (not identity).
# 5: train.fp16_init_scale.
SCHEMA_VERSION = 5
# Keys added after schema version 1: dotted key -> (version that added it, the value that reproduces the
# behaviour before it existed). At that value a key does not enter the run id.
ADDED_KEYS: dict[str, tuple[int, Any]] = {
    "data.jpeg_draft": (3, True), "train.decay_position_bias": (3, False),
    "train.decay_fraction": (4, 0.2), "train.decay_shape": (4, "linear"),
    "train.fp16_init_scale": (5, 65536.0),
}


@dataclass
class ModelConfig:
    name: str = "swinv2-cpu-s"  # family or preset name (mimscale.models.list_models())
    drop_path_rate: float = 0.1
    kwargs: dict[str, Any] = field(default_factory=dict)  # any other constructor keyword


@dataclass
class ObjectiveConfig:
    norm_target: bool = True  # the SwinV2 SimMIM recipe; the released val losses are on this scale
    norm_target_window: int = 47  # odd; shrink it for small images (the demo uses 15 at 32 px)


@dataclass
class DataConfig:
    source: str = "shapes:size=32,pool=1000,seed=0"  # see mimscale.data.build_source
    val_source: str | None = None  # None: the source's own held-out split
    fraction: float = 1.0  # nested, class-stratified subset of the training pool
    subset_seed: int = 0
    img_size: int = 32
    mask_patch_size: int = 8
    mask_ratio: float = 0.6
    crop_scale: tuple[float, float] = (0.67, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True
    num_workers: int = 0  # loader worker processes; 0 = in the training process
    val_size: int = 1000  # held-out images in the validation loss (0 = all)
    probe_size: int = 500  # fixed probe of the training subset for the train/val gap
    val_mask_seed: int = 0  # validation masks are a function of (this seed, image index) only
    # Decode large JPEGs at 1/2-1/8 scale in the DCT when the crop keeps >= img_size pixels per side: faster,
    # but a different low-pass than a full decode + resize, so a slightly different normalised target. The
    # official code decodes fully: the paper configs turn it off.
    jpeg_draft: bool = True


@dataclass
class TrainConfig:
    # Length: exactly one of iters / epochs / samples is > 0; converted to steps in train/schedule.py.
    iters: int = 0
    epochs: float = 0.0
    samples: int = 0
    batch_size: int = 64  # global batch: per-rank batch x world size x accum_steps
    accum_steps: int = 1
    base_lr: float = 1e-4  # per 512 images; lr = base_lr * batch_size / 512
    warmup_lr: float = 5e-7  # per 512 images
    min_lr: float = 5e-6  # per 512 images
    warmup_iters: int = -1  # -1: warmup_fraction of the run
    warmup_fraction: float = 0.05
    schedule: str = "cosine"  # cosine | step (x step_gamma at step_at of training) | wsd (warmup-stable-decay)
    step_at: float = 0.875
    step_gamma: float = 0.1
    decay_fraction: float = 0.2  # wsd: the last fraction of the run decays to min_lr
    decay_shape: str = "linear"  # wsd: linear | cosine
    weight_decay: float = 0.05
    # Swin V2: also decay the continuous-position-bias MLP weights and the logit scales, as the official
    # SimMIM pre-training does (its no-decay names never match) and the released checkpoints were trained.
    # False: exempt them, the official code's intent and its fine-tuning.
    decay_position_bias: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    clip_grad: float = 5.0  # max global grad norm; 0 = off
    precision: str = "fp32"  # fp32 | bf16 | fp16 (with a grad scaler; runs on CPU too, slowly: for tests)
    fp16_init_scale: float = 65536.0  # fp16: the grad scaler's first loss scale (torch's, as the official code)
    compile: bool = False
    eval_every: int = 0  # steps between validation evaluations; 0: eval_points evenly spaced
    eval_points: int = 10
    # With eval_points: fewer points for short runs so that validation (held-out + probe forward passes,
    # step 0 included) stays within this fraction of the training compute; 0 = always eval_points.
    eval_budget: float = 0.05
    log_every: int = 10
    ckpt_every: int = 0  # steps between checkpoints; 0: at the eval_every / eval_points steps (before eval_budget)
    keep_last: int = 2
    max_nonfinite: int = 10  # consecutive non-finite losses before the run stops
    # Stop a run whose smoothed training loss rises above this multiple of its running minimum (a diverged run
    # otherwise goes on, finite, to the end); 0 = off. A guard, not part of the run identity.
    divergence_factor: float = 4.0
    recon_images: int = 8  # held-out images in the reconstruction picture (0 = none)
    tensorboard: bool = False
    debug_nan_steps: list[int] = field(default_factory=list)  # fault injection: steps whose loss is NaN
    # Shared prefixes (train/prefix.py; set by the study runner): a trunk evaluates and keeps checkpoints where
    # the shorter runs of these lengths need them; a branch starts from "TRUNK_RUN_DIR@STEP". Neither changes
    # what the run computes.
    share_with: list[int] = field(default_factory=list)
    branch_from: str = ""


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads; 0 = leave torch's default
    out: str = "runs"  # parent of the run directory
    name: str = ""  # run directory name; empty: the run id
    run_dir: str = ""  # explicit run directory (wins over out/name)


# Keys that say where or how fast a run goes, not what it computes: they do not enter the run id.
NON_IDENTITY_KEYS = ("device", "threads", "out", "name", "run_dir", "data.num_workers", "train.log_every",
                     "train.keep_last", "train.tensorboard", "train.compile", "train.ckpt_every",
                     "train.divergence_factor", "train.share_with", "train.branch_from")


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            full = f"{prefix}{k}"
            keys.append(full)
            child = node._get_node(k)
            if isinstance(child, DictConfig) and not full.endswith("kwargs"):
                keys += _all_keys(child, full + ".")
    return keys


def _unknown_key_error(key: str, schema: DictConfig) -> ConfigError:
    close = difflib.get_close_matches(key, _all_keys(schema), n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"unknown config key '{key}'{hint}")


def merge(base: DictConfig, other: Any, what: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        if "Key" in type(e).__name__ or "not in struct" in str(e):
            raise _unknown_key_error(key, base) from None
        msg = str(e).splitlines()[0]
        raise ConfigError(f"bad value in {what}{f' for {key}' if key else ''}: {msg}") from None


def load_layered(schema: Any, path: str | Path | None, overrides, check) -> DictConfig:
    """A structured ``schema`` < YAML file < dotted overrides, checked by ``check(cfg)``, then frozen.

    Shared by every config of the project (pre-training, evaluation), so they all merge and fail alike.
    """
    cfg = OmegaConf.structured(schema)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = OmegaConf.load(path)
        except Exception as e:  # yaml errors carry multi-line marks; keep the first line
            raise ConfigError(f"cannot parse {path}: {str(e).splitlines()[0]}") from None
        if not isinstance(loaded, DictConfig):
            raise ConfigError(f"{path} is a YAML {type(loaded).__name__.removesuffix('Config').lower()}, not a "
                              f"mapping of config values (key: value)")
        cfg = merge(cfg, loaded, str(path))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not key=value")
        key, _ = item.split("=", 1)
        try:
            dotlist = OmegaConf.from_dotlist([item])
        except Exception as e:
            raise ConfigError(f"cannot parse override '{item}': {str(e).splitlines()[0]}") from None
        cfg = merge(cfg, dotlist, f"override '{key}'")
    check(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                base: Config | None = None) -> DictConfig:
    """Defaults (or ``base``) < YAML file < dotted ``key=value`` overrides -> a frozen DictConfig."""
    return load_layered(base or Config(), path, overrides, validate)


def _positive(v) -> bool:
    return v > 0


def _non_negative(v) -> bool:
    return v >= 0


# (key, test, what the test asks for): one-line errors for every numeric key, so a bad value fails here and
# not as a traceback (or, worse, silently) somewhere inside a run.
_RANGES = (
    ("seed", lambda v: True, ""),
    ("threads", _non_negative, ">= 0 (0: torch's default)"),
    ("model.drop_path_rate", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("objective.norm_target_window", _positive, "a positive odd number"),
    ("data.fraction", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("data.img_size", _positive, "a positive number of pixels"),
    ("data.mask_patch_size", _positive, "a positive number of pixels"),
    ("data.mask_ratio", lambda v: 0 < v < 1, "in (0, 1)"),
    ("data.num_workers", _non_negative, ">= 0 (0: load in the training process)"),
    ("data.val_size", _non_negative, ">= 0 (0: the whole held-out set)"),
    ("data.probe_size", _non_negative, ">= 0"),
    ("train.iters", _non_negative, ">= 0"),
    ("train.epochs", _non_negative, ">= 0"),
    ("train.samples", _non_negative, ">= 0"),
    ("train.batch_size", _positive, "positive"),
    ("train.accum_steps", _positive, "positive"),
    ("train.base_lr", _positive, "positive"),
    ("train.warmup_lr", _non_negative, ">= 0"),
    ("train.min_lr", _non_negative, ">= 0"),
    ("train.warmup_iters", lambda v: v >= -1, ">= 0 (or -1: train.warmup_fraction of the run)"),
    ("train.warmup_fraction", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("train.step_at", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("train.step_gamma", _positive, "positive"),
    ("train.decay_fraction", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("train.weight_decay", _non_negative, ">= 0"),
    ("train.eps", _positive, "positive"),
    ("train.clip_grad", _non_negative, ">= 0 (0: off)"),
    ("train.eval_every", _non_negative, ">= 0 (0: train.eval_points evenly spaced)"),
    ("train.eval_points", _non_negative, ">= 0"),
    ("train.eval_budget", _non_negative, ">= 0 (0 = no cap)"),
    ("train.log_every", _positive, "positive"),
    ("train.ckpt_every", _non_negative, ">= 0 (0: at the evaluation steps)"),
    ("train.keep_last", _non_negative, ">= 0 (0: keep every checkpoint)"),
    ("train.max_nonfinite", _positive, "positive"),
    ("train.fp16_init_scale", _positive, "positive"),
    ("train.divergence_factor", lambda v: v == 0 or v > 1, "> 1 (or 0: off)"),
    ("train.recon_images", _non_negative, ">= 0"),
)
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _check_range(cfg: DictConfig, key: str, test, what: str) -> None:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value}")
    if not test(value):
        raise ConfigError(f"{key} must be {what}, got {value}")


def _check_pair(key: str, pair, lo_min: float, hi_max: float) -> None:
    lo, hi = pair
    if not (math.isfinite(lo) and math.isfinite(hi) and lo_min < lo <= hi <= hi_max):
        bound = f" <= {hi_max:g}" if math.isfinite(hi_max) else ""
        raise ConfigError(f"{key} must be [lo, hi] with {lo_min:g} < lo <= hi{bound}, got {list(pair)}")


def validate(cfg: DictConfig) -> None:
    t, d = cfg.train, cfg.data
    for key, test, what in _RANGES:
        _check_range(cfg, key, test, what)
    if sum([t.iters > 0, t.epochs > 0, t.samples > 0]) != 1:
        raise ConfigError("give exactly one training length: train.iters, train.epochs or train.samples")
    if d.img_size % d.mask_patch_size:
        raise ConfigError(f"data.img_size {d.img_size} is not a multiple of data.mask_patch_size {d.mask_patch_size}")
    _check_pair("data.crop_scale", d.crop_scale, 0.0, 1.0)
    _check_pair("data.crop_ratio", d.crop_ratio, 0.0, math.inf)
    if not all(0 <= b < 1 for b in t.betas):
        raise ConfigError(f"train.betas must both be in [0, 1), got {list(t.betas)}")
    if t.schedule not in ("cosine", "step", "wsd"):
        raise ConfigError(f"train.schedule must be 'cosine', 'step' or 'wsd', got '{t.schedule}'")
    if t.decay_shape not in ("linear", "cosine"):
        raise ConfigError(f"train.decay_shape must be 'linear' or 'cosine', got '{t.decay_shape}'")
    if t.precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"train.precision must be fp32, bf16 or fp16, got '{t.precision}'")
    if t.eval_every <= 0 and t.eval_points <= 0:
        raise ConfigError("train.eval_points must be positive (or set train.eval_every)")
    if cfg.objective.norm_target and cfg.objective.norm_target_window % 2 == 0:
        raise ConfigError("objective.norm_target_window must be odd")
    if t.branch_from and not re.fullmatch(r".+@\d+", t.branch_from):
        raise ConfigError(f"train.branch_from must be RUN_DIR@STEP, got '{t.branch_from}'")
    if not _DEVICE.fullmatch(cfg.device):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got '{cfg.device}'")


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def _pop(d: dict, dotted: str) -> Any:
    *parents, leaf = dotted.split(".")
    for p in parents:
        d = d.get(p, {})
    return d.pop(leaf, None)


def identity(cfg: DictConfig) -> dict:
    """The part of the config that determines the run's results: no placement or speed keys, and no key added
    after schema version 1 while it holds its neutral value."""
    d = to_container(cfg)
    for key in NON_IDENTITY_KEYS:
        _pop(d, key)
    for key, (_, neutral) in ADDED_KEYS.items():
        if OmegaConf.select(cfg, key) == neutral:
            _pop(d, key)
    return d


def run_id(cfg: DictConfig) -> str:
    """Short stable hash of the identity config (sorted JSON, so independent of dict order and hash seed)."""
    blob = json.dumps(identity(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def dump_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, sort_keys=False)
