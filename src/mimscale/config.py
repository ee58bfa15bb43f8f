"""Typed, nested run configuration: defaults < YAML file < dotted overrides, validated and frozen.

OmegaConf structured configs do the merging, type checking and ``key=value`` parsing; this module
adds one-line errors (an unknown key names the closest valid one), the run identity hash and where config
files are found (as given, then among the configs installed with the package). Each key is declared once,
with its default, check, documentation and identity role (``config_keys.key``); ``KEYS``,
``NON_IDENTITY_KEYS``, ``ADDED_KEYS`` and docs/CONFIG.md are derived from the declarations.

Run identity survives upgrades: a key added to the schema after version 1 is declared with ``since=`` the
schema version that added it and a default that keeps the old behaviour; at that value it is left out of the
hash, so every run id computed before the key existed stays the same (and a run directory or study
directory of the older version is still recognised). Only a value that changes what a run computes changes
its id.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mimscale.config_keys import (
    FLAG,
    MAPPING,
    NOT_EMPTY,
    PLACEMENT,
    PLAIN_NAME,
    SEED,
    TEXT,
    Check,
    Key,
    at_least_zero,
    between,
    declarations,
    each,
    key,
    matches,
    one_of,
    pair,
    positive,
    section,
)
from mimscale.errors import ConfigError

__all__ = ["Config", "ConfigError", "load_config", "load_layered", "merge", "resolve", "validate", "run_id", "identity",
           "to_container", "flatten", "dump_yaml", "find_config", "warmup_steps", "SCHEMA_VERSION", "ADDED_KEYS", "NON_IDENTITY_KEYS", "KEYS"]

# Version of the config schema; written to provenance.json. Bump it when a key is added (and declare that
# key with ``since=`` the new version and the default that reproduces the behaviour before it) or when a
# default changes what runs compute. 2: train.divergence_factor (a guard, not identity); 3: data.jpeg_draft,
# train.decay_position_bias; 4: the wsd schedule (train.decay_fraction, train.decay_shape); train.share_with,
# train.branch_from (not identity). 5: train.fp16_init_scale. 6: train.warmup, train.eval_interval (written
# into the two keys each replaces when a config loads, so they never enter a run id). 7: the evaluation keys
# lr_floor_rule, drop_last and jpeg_draft (the first two change a default: see ``config_keys.Key.before``).
SCHEMA_VERSION = 7

PRECISIONS = ("fp32", "bf16", "fp16")
TRACKERS = ("tensorboard", "wandb", "mlflow")  # what `track` may name (train/tracking.py opens them)
TRACKED = Check(lambda v: all(s in TRACKERS for s in v) and len(set(v)) == len(v),
                "a list of distinct trackers from " + ", ".join(TRACKERS))
WARMUP = re.compile(r"|(\d+)|(\d+(?:\.\d*)?|\.\d+)%")
DEVICE = matches(r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda or cuda:N")
# Shared with the evaluation config (mimscale.evaluate.config): one declaration, two schemas.
FP16_INIT_SCALE = Key(65536.0, "fp16: the grad scaler's first loss scale (torch's default, as the official code)",
                      Check(lambda v: 0 < v <= 2.0**64, "positive (at most 2^64)"), since=5)


@dataclass
class ModelConfig:
    name: str = key("swinv2-cpu-s", "model family or preset name (`mimscale.models.list_models()`)", NOT_EMPTY)
    drop_path_rate: float = key(0.1, "stochastic depth rate of the encoder", between(0, 1, False, True))
    kwargs: dict[str, Any] = key({}, "any other model constructor keyword, e.g. `{window_size: 12}`", MAPPING)


@dataclass
class ObjectiveConfig:
    norm_target: bool = key(True, "normalise the pixel target per local window (the Swin V2 SimMIM recipe; the "
                                  "released validation losses are on this scale)", FLAG)
    norm_target_window: int = key(47, "side of the target normalisation window; odd. Shrink it for small images "
                                      "(the demo uses 15 at 32 px)", positive("a positive odd number"))


@dataclass
class DataConfig:
    source: str = key("shapes:size=32,pool=1000,seed=0", "the training image source (see `mimscale.data."
                      "build_source`): shapes:..., photos:..., folder:/path, ...", NOT_EMPTY)
    val_source: str | None = key(None, "held-out image source; null: the source's own held-out split",
                                 Check(lambda v: True, "null or an image source"))
    fraction: float = key(1.0, "nested, class-stratified subset of the training pool", between(0, 1, True, False))
    subset_seed: int = key(0, "seed of the nested subset", SEED)
    img_size: int = key(32, "training image side in pixels; a multiple of data.mask_patch_size",
                        positive("a positive number of pixels"))
    mask_patch_size: int = key(8, "side of a masked square in pixels", positive("a positive number of pixels"))
    mask_ratio: float = key(0.6, "fraction of the mask units masked", between(0, 1, True, True))
    crop_scale: tuple[float, float] = key((0.67, 1.0), "random-resized-crop area range", pair(0.0, 1.0))
    crop_ratio: tuple[float, float] = key((3 / 4, 4 / 3), "random-resized-crop aspect ratio range",
                                          pair(0.0, math.inf))
    hflip: bool = key(True, "random horizontal flips", FLAG)
    num_workers: int = key(0, "loader worker processes; 0: load in the training process",
                           at_least_zero("0: load in the training process"), role=PLACEMENT)
    val_size: int = key(1000, "held-out images in the validation loss; 0: all",
                        at_least_zero("0: the whole held-out set"))
    probe_size: int = key(500, "fixed probe of the training subset for the train/val gap", at_least_zero())
    val_mask_seed: int = key(0, "validation masks are a function of (this seed, image index) only", SEED)
    # The official code decodes fully: the paper configs turn it off.
    jpeg_draft: bool = key(True, "decode large JPEGs at 1/2-1/8 scale in the DCT when the crop keeps >= img_size "
                                 "pixels per side: faster, but a different low-pass than a full decode + resize, "
                                 "so a slightly different normalised target", FLAG, since=3)


@dataclass
class TrainConfig:
    # Length: exactly one of iters / epochs / samples is > 0; converted to steps in train/schedule.py.
    iters: int = key(0, "training length in steps (exactly one of iters, epochs, samples is > 0)", at_least_zero())
    epochs: float = key(0.0, "training length in passes over the training subset", at_least_zero())
    samples: int = key(0, "training length in images (rounded up to whole steps)", at_least_zero())
    batch_size: int = key(64, "global batch: per-process batch x processes x train.accum_steps", positive())
    accum_steps: int = key(1, "micro-batches accumulated per step and process", positive())
    base_lr: float = key(1e-4, "peak learning rate per 512 images: lr = base_lr x batch_size / 512", positive())
    warmup_lr: float = key(5e-7, "learning rate at the start of the warmup, per 512 images", at_least_zero())
    min_lr: float = key(5e-6, "final learning rate, per 512 images", at_least_zero())
    warmup: str = key("", "the warmup in one value: steps (`1562`) or a percentage of the run (`1.25%`). Written into "
                          "train.warmup_iters / train.warmup_fraction when the config loads (and wins over them), so "
                          "`warmup: 1.25%` is the same run, with the same id, as `warmup_fraction: 0.0125`; empty: "
                          "those two keys as given", matches(WARMUP.pattern, "steps (1562) or a percentage (1.25%)"),
                      since=6)
    warmup_iters: int = key(-1, "warmup steps; -1: train.warmup_fraction of the run",
                            Check(lambda v: v >= -1, ">= 0 (or -1: train.warmup_fraction of the run)"))
    warmup_fraction: float = key(0.05, "warmup as a fraction of the run (when train.warmup_iters is -1)",
                                 between(0, 1, False, False))
    schedule: str = key("cosine", "cosine | step (x train.step_gamma at train.step_at of training) | wsd "
                                  "(warmup-stable-decay)", one_of("cosine", "step", "wsd"))
    step_at: float = key(0.875, "step schedule: the fraction of training at which the LR drops",
                         between(0, 1, True, False))
    step_gamma: float = key(0.1, "step schedule: the LR factor of the drop", positive())
    decay_fraction: float = key(0.2, "wsd: the last fraction of the run decays to min_lr", between(0, 1, True, False),
                                since=4)
    decay_shape: str = key("linear", "wsd: the shape of the decay", one_of("linear", "cosine"), since=4)
    weight_decay: float = key(0.05, "AdamW weight decay", at_least_zero())
    decay_position_bias: bool = key(False, "Swin V2: also decay the continuous-position-bias MLP weights and the "
                                           "logit scales, as the official SimMIM pre-training does (its no-decay "
                                           "names never match) and the released checkpoints were trained; false: "
                                           "exempt them, the official code's intent and its fine-tuning", FLAG,
                                    since=3)
    betas: tuple[float, float] = key((0.9, 0.999), "AdamW betas", each(between(0, 1, False, True), "both be in [0, 1)",
                                                                         verb="must"))
    eps: float = key(1e-8, "AdamW epsilon", positive())
    clip_grad: float = key(5.0, "max global gradient norm; 0: off", at_least_zero("0: off"))
    precision: str = key("fp32", "fp32 | bf16 | fp16 (with a grad scaler; runs on CPU too, slowly: for tests)",
                         one_of(*PRECISIONS))
    fp16_init_scale: float = FP16_INIT_SCALE.field()
    compile: bool = key(False, "torch.compile the model", FLAG, role=PLACEMENT)
    eval_interval: str = key("", "the validation spacing in one value: steps (`500`) or a percentage of the run "
                                 "(`10%`: 10 evenly spaced points; 100 / the percentage must be whole). Written "
                                 "into train.eval_every / train.eval_points when the config loads (and wins over "
                                 "them), so the run id is the same either way; empty: those two keys as given",
                             matches(WARMUP.pattern, "steps (500) or a percentage (10%)"), since=6)
    eval_every: int = key(0, "steps between validation evaluations; 0: train.eval_points evenly spaced",
                          at_least_zero("0: train.eval_points evenly spaced"))
    eval_points: int = key(10, "validation evaluations, evenly spaced (when train.eval_every is 0)",
                           at_least_zero())
    eval_budget: float = key(0.05, "with eval_points: fewer points for short runs so that validation (held-out + "
                                    "probe forward passes, step 0 included) stays within this fraction of the "
                                    "training compute; 0: always eval_points", at_least_zero("0 = no cap"))
    log_every: int = key(10, "steps between log lines", positive(), role=PLACEMENT)
    ckpt_every: int = key(0, "steps between checkpoints; 0: at the eval_every / eval_points steps (before "
                             "eval_budget)", at_least_zero("0: at the evaluation steps"), role=PLACEMENT)
    keep_last: int = key(2, "checkpoints kept; 0: keep every checkpoint",
                         at_least_zero("0: keep every checkpoint"), role=PLACEMENT)
    max_nonfinite: int = key(10, "consecutive non-finite losses before the run stops", positive())
    divergence_factor: float = key(4.0, "stop a run whose smoothed training loss rises above this multiple of its "
                                        "running minimum (a diverged run otherwise goes on, finite, to the end); "
                                        "0: off. A guard, not part of the run identity",
                                   Check(lambda v: v == 0 or v > 1, "> 1 (or 0: off)"), role=PLACEMENT)
    recon_images: int = key(8, "held-out images in the reconstruction picture; 0: none", at_least_zero())
    tensorboard: bool = key(False, "older spelling of `track: [tensorboard]` (TensorBoard is on by default now): "
                                   "true adds tensorboard to `track` when the config loads", FLAG, role=PLACEMENT)
    debug_nan_steps: list[int] = key([], "fault injection: steps whose loss is NaN (for tests)",
                                     each(Check(lambda v: v >= 0, ""), "a list of steps >= 0"))
    # Shared prefixes (train/prefix.py; set by the study runner). Neither changes what the run computes.
    share_with: list[int] = key([], "set by the study runner: a trunk evaluates and keeps checkpoints where the "
                                    "shorter runs of these lengths need them",
                                each(Check(lambda v: v > 0, ""), "a list of positive lengths"), role=PLACEMENT)
    branch_from: str = key("", "set by the study runner: a branch starts from TRUNK_RUN_DIR@STEP",
                           matches(r"(.+@\d+)?", "RUN_DIR@STEP"), role=PLACEMENT)


@dataclass
class Config:
    model: ModelConfig = section(ModelConfig, "the encoder")
    objective: ObjectiveConfig = section(ObjectiveConfig, "the SimMIM reconstruction target")
    data: DataConfig = section(DataConfig, "pre-training images, subset and masking")
    train: TrainConfig = section(TrainConfig, "optimisation, length, evaluation and checkpoints")
    seed: int = key(0, "seed of the model initialisation, masks and data order", SEED)
    device: str = key("auto", "auto | cpu | cuda | cuda:N", DEVICE, role=PLACEMENT)
    threads: int = key(0, "torch intra-op threads; 0: torch's default", at_least_zero("0: torch's default"),
                       role=PLACEMENT)
    out: str = key("runs", "parent of the run directory", TEXT, role=PLACEMENT)
    name: str = key("", "run directory name inside `out` (no '/' or '..'); empty: model, data fraction, length "
                        "and run id (`vit-cpu-s_f0.1_it2000-<id>`)", PLAIN_NAME, role=PLACEMENT)
    run_dir: str = key("", "explicit run directory (wins over out/name)", TEXT, role=PLACEMENT)
    track: list[str] = key(list(TRACKERS[:1]), "where metrics, hyper-parameters and evaluation results are tracked "
                                               "besides metrics.jsonl: any of tensorboard (RUN_DIR/tb/, skipped with a "
                                               "warning when not installed), wandb, mlflow (pip install "
                                               "'mimscale[track]'); [] for none. Evaluations of a run go where it "
                                               "went", TRACKED, role=PLACEMENT)


# Every key's declaration, by dotted name; the tables below are derived from it.
KEYS = dict(declarations(Config))
# Keys that say where or how fast a run goes, not what it computes: they do not enter the run id.
NON_IDENTITY_KEYS = tuple(k for k, d in KEYS.items() if d.role == PLACEMENT)
# Keys added after schema version 1: dotted key -> (version that added it, the value that reproduces the
# behaviour before it existed). At that value a key does not enter the run id.
ADDED_KEYS: dict[str, tuple[int, Any]] = {k: (d.since, d.neutral) for k, d in KEYS.items() if d.since}


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
    except (TypeError, ValueError) as e:  # OmegaConf's own: a list where a mapping is declared, or the reverse
        raise ConfigError(f"bad value in {what}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


# The configs installed with the package (pretrain/, finetune/, studies/): `-c pretrain/swinv2-cpu.yaml` works
# from any directory, and so does a study file copied out of the package (its ../pretrain/... base_config).
PACKAGED_CONFIGS = Path(str(resources.files("mimscale") / "configs"))


def config_candidates(path: str | Path, relative_to: Path | None = None) -> list[Path]:
    """Where a config file named ``path`` is looked for, in order: as given (relative to ``relative_to``, e.g. the
    study file's folder, or else to the working directory), then among the packaged configs by its short name
    (``pretrain/swinv2-cpu.yaml``; the repository's former top-level ``configs/...`` paths name the same files)."""
    path = Path(path)
    if path.is_absolute():
        return [path]
    found = [relative_to / path if relative_to is not None else path]
    parts = path.parts[1:] if path.parts[:1] == ("configs",) else path.parts
    if parts[:1] == ("..",):  # written relative to a packaged study file (studies/x.yaml)
        found.append(Path(os.path.normpath(PACKAGED_CONFIGS / "studies" / Path(*parts))))
    elif parts:
        found.append(PACKAGED_CONFIGS / Path(*parts))
    return found


def find_config(path: str | Path, relative_to: Path | None = None, what: str = "config file") -> Path:
    """The first of ``config_candidates`` that exists; the error names every place tried."""
    tried = config_candidates(path, relative_to)
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{what} not found: {path} (tried {', '.join(str(t) for t in tried)})")


def load_layered(schema: Any, path: str | Path | None, overrides, check) -> DictConfig:
    """A structured ``schema`` < YAML file < dotted overrides, checked by ``check(cfg)``, then frozen.

    Shared by every config of the project (pre-training, evaluation), so they all merge and fail alike.
    """
    cfg = OmegaConf.structured(schema)
    if path is not None:
        path = find_config(path)
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
    resolve(cfg)
    check(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def resolve(cfg: DictConfig) -> None:
    """Resolve every ``${...}`` interpolation in place, once, at load: the checks then see the values a run will
    use, the config.yaml written into a run directory holds them (not a reference to this machine's environment),
    and an interpolation that cannot be resolved (a missing variable, a key that refers to itself) is one line."""
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        msg = " ".join(str(e).split("full_key:")[0].split())
        raise ConfigError(f"cannot resolve an interpolation in the config: {msg}") from None
    except RecursionError:
        raise ConfigError("cannot resolve an interpolation in the config: it refers to itself") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"cannot resolve an interpolation in the config: {str(e).splitlines()[0]}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                base: Config | None = None) -> DictConfig:
    """Defaults (or ``base``) < YAML file < dotted ``key=value`` overrides -> a frozen DictConfig."""
    return load_layered(base or Config(), path, overrides, normalise_and_validate)


def _one_warmup(cfg: DictConfig) -> None:
    """``train.warmup`` -> the pair it stands for (``warmup_iters``, or ``warmup_iters=-1`` and ``warmup_fraction``),
    so a run's identity is written one way whichever way its warmup was given."""
    t = cfg.train
    text = str(t.warmup).strip()
    if not text:
        return
    m = WARMUP.fullmatch(text)
    if m is None:
        raise ConfigError(f"train.warmup must be steps (1562) or a percentage of the run (1.25%), got '{text}'")
    if m.group(1) is not None:
        t.warmup_iters = int(m.group(1))
    else:  # the decimal the user wrote / 100, rounded once: 1.25% is exactly the float 0.0125
        t.warmup_iters, t.warmup_fraction = -1, float(Decimal(m.group(2)) / 100)
    t.warmup = ""


def warmup_steps(t: Any, total: int) -> int:
    """The warmup of a run of ``total`` steps from its ``train`` section: ``warmup_iters``, or (-1) a fraction.
    A warmup longer than the run is refused: the run would never reach its learning rate."""
    if t.warmup_iters > total:
        raise ConfigError(f"train.warmup_iters {t.warmup_iters} is longer than the run ({total} steps)")
    return int(t.warmup_iters) if t.warmup_iters >= 0 else round(t.warmup_fraction * total)


def _one_eval_interval(cfg: DictConfig) -> None:
    """``train.eval_interval`` -> ``eval_every`` (steps), or ``eval_every=0`` and ``eval_points`` (a percentage)."""
    t = cfg.train
    text = str(t.eval_interval).strip()
    if not text:
        return
    m = WARMUP.fullmatch(text)
    steps = int(m.group(1)) if m is not None and m.group(1) is not None else 0
    percent = Decimal(m.group(2)) if m is not None and m.group(2) is not None else Decimal(0)
    points = Decimal(100) / percent if percent > 0 else Decimal(0)
    if steps <= 0 and (points <= 0 or points != points.to_integral_value()):
        raise ConfigError(f"train.eval_interval must be steps > 0 (500) or a percentage of the run that divides 100 "
                          f"(10%), got '{text}'")
    if steps > 0:
        t.eval_every = steps
    else:
        t.eval_every, t.eval_points = 0, int(points)
    t.eval_interval = ""


def _one_tracking_key(cfg: DictConfig) -> None:
    """``train.tensorboard=true`` (the key before ``track``) -> tensorboard in ``track``. false says nothing: it was
    the old default, written into every config.yaml, so it does not turn TensorBoard off."""
    if cfg.train.tensorboard:
        if "tensorboard" not in cfg.track:
            cfg.track = [*cfg.track, "tensorboard"]
        cfg.train.tensorboard = False


def normalise_and_validate(cfg: DictConfig) -> None:
    """What ``load_config`` checks: keys that stand for others written into them first, then ``validate``."""
    _one_warmup(cfg)
    _one_tracking_key(cfg)
    _one_eval_interval(cfg)
    validate(cfg)


def validate(cfg: DictConfig) -> None:
    """Every key's own check (a one-line error for each bad value, so it fails here and not as a traceback, or
    silently, inside a run), then the checks that relate keys."""
    for name, decl in KEYS.items():
        decl.check(name, OmegaConf.select(cfg, name))
    t, d = cfg.train, cfg.data
    for given, where in (("img_size", "data.img_size"), ("drop_path_rate", "model.drop_path_rate")):
        if given in cfg.model.kwargs:  # the run passes these two itself: one value, one key
            raise ConfigError(f"model.kwargs.{given} is set by {where}; set that key instead")
    if sum([t.iters > 0, t.epochs > 0, t.samples > 0]) != 1:
        raise ConfigError("give exactly one training length: train.iters, train.epochs or train.samples")
    if d.img_size % d.mask_patch_size:
        raise ConfigError(f"data.img_size {d.img_size} is not a multiple of data.mask_patch_size {d.mask_patch_size}")
    if t.iters > 0 or t.samples > 0:  # the length in steps is known without the data: check the warmup now
        warmup_steps(t, t.iters if t.iters > 0 else -(-t.samples // t.batch_size))
    if t.eval_every <= 0 and t.eval_points <= 0:
        raise ConfigError("train.eval_points must be positive (or set train.eval_every)")
    if cfg.objective.norm_target and cfg.objective.norm_target_window % 2 == 0:
        raise ConfigError("objective.norm_target_window must be odd")


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys (``{"train": {"iters": 20}}`` -> ``{"train.iters": 20}``); an empty mapping stays a value (it can mean "no kwargs")."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _pop(d: dict, dotted: str) -> Any:
    *parents, leaf = dotted.split(".")
    for p in parents:
        d = d.get(p, {})
    return d.pop(leaf, None)


def identity(cfg: DictConfig) -> dict:
    """The part of the config that determines the run's results: no placement or speed keys, and no key added
    after schema version 1 while it holds its neutral value."""
    d = to_container(cfg)
    for name in NON_IDENTITY_KEYS:
        _pop(d, name)
    for name, (_, neutral) in ADDED_KEYS.items():
        if OmegaConf.select(cfg, name) == neutral:
            _pop(d, name)
    return d


def run_id(cfg: DictConfig) -> str:
    """Short stable hash of the identity config (sorted JSON, so independent of dict order and hash seed)."""
    blob = json.dumps(identity(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def dump_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, sort_keys=False)
