"""Load a pre-trained encoder from a run directory or a checkpoint file (docs/METHOD.md, Fine-tuning and
other evaluations).

A checkpoint file is mimscale's or the official SimMIM code's (pre-training or fine-tuning; read by
``models.official.read_checkpoint_file``, which runs nothing from the file); its stored config gives the
pre-training geometry. Every state dict goes through ``models.official.canonical_state`` (``module.``
stripped, ``rpe_mlp`` renamed). The SimMIM decoder is dropped; position-index buffers are never taken from
a checkpoint (the backbones register them non-persistent and rebuild them for the requested size), but
those an official file stores are first checked against the pre-training model's; the encoder may be built
at another image size or window. A checkpoint that does not fit the requested model is refused with one
line naming what differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from omegaconf import OmegaConf

from mimscale.engine.checkpoint import newest_intact
from mimscale.errors import EvalError, UnknownModelError
from mimscale.models import build_model, model_kwargs, official
from mimscale.rundir import RunDir


@dataclass
class LoadedEncoder:
    encoder: nn.Module
    model_name: str
    kwargs: dict  # constructor keywords the encoder was built with (preset resolved)
    checkpoint: str | None  # None: random init
    step: int | None
    run_config: dict  # the pre-training run's resolved config


def read_run_config(run_dir: RunDir) -> dict:
    if not run_dir.path.is_dir():
        raise EvalError(f"run directory not found: {run_dir.path}")
    if run_dir.config.is_file():
        return OmegaConf.to_container(OmegaConf.load(run_dir.config), resolve=True)
    _, saved = newest_intact([p for _, p in run_dir.list_checkpoints()], "evaluate")
    if saved is not None:  # a checkpoint carries the full config too
        cfg = saved.get("config")
        if isinstance(cfg, dict):
            return cfg
    raise EvalError(f"{run_dir.path} has no config.yaml: not a pre-training run directory")


def _pretrained_model(name: str, kwargs: dict) -> nn.Module:
    """The pre-training model, built on the meta device (no memory, no init): its ``finetune_geometry()`` and
    buffer shapes."""
    with torch.device("meta"):
        return build_model(name, **kwargs)


def eval_home(source: str | Path) -> RunDir:
    """Where an evaluation of ``source`` writes its results: a run directory itself; for a checkpoint file
    FILE, the directory ``FILE_eval`` beside it (results in ``FILE_eval/eval/<name>.json``)."""
    source = Path(source)
    if source.is_file():
        return RunDir(source.with_name(f"{source.stem}_eval"))
    return RunDir(source)


def _read_file_source(path: Path) -> tuple[dict, dict]:
    """(run config, contents) of a checkpoint file given instead of a run directory. An official file's yacs
    config becomes the run config it implies; a file without any config gives {} (the model must be named)."""
    ckpt = official.read_checkpoint_file(path)
    cfg = ckpt.get("config")
    if isinstance(cfg, dict) and "train" in cfg:
        return cfg, ckpt
    if isinstance(cfg, dict):
        state = ckpt.get("model")
        pretraining = not (isinstance(state, dict) and official.is_official_finetuned(official.canonical_state(state)))
        return official.run_config(cfg, pretraining), ckpt
    return {}, ckpt

def _fit_error(path, name: str, missing, unexpected, shapes) -> EvalError:
    parts = []
    if shapes:
        k, (a, b) = shapes[0]
        parts.append(f"{len(shapes)} shape mismatches (e.g. {k}: checkpoint {tuple(a)} vs model {tuple(b)})")
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
    return EvalError(f"checkpoint {path} does not fit model '{name}': " + "; ".join(parts))


def encoder_state(state: dict) -> dict:
    """The encoder's entries of a SimMIM state dict (``encoder.*``, prefix stripped; the decoder dropped) or of
    an official fine-tuned Swin V2 (everything but the ``head.*`` classifier), in mimscale's names."""
    state = official.canonical_state(state)
    if any(k.startswith("encoder.") for k in state):
        return {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    if official.is_official_finetuned(state):
        return {k: v for k, v in state.items() if not k.startswith("head.")}
    return {}


def load_encoder(run_dir: str | Path, *, model: str = "", overrides: dict | None = None, img_size: int = 0,
                 drop_path_rate: float | None = None, checkpoint: str = "", init: str = "pretrained",
                 seed: int = 0) -> LoadedEncoder:
    """Build the run's encoder (or ``model`` with ``overrides``) and load its pre-trained weights.

    ``run_dir`` is a run directory or a checkpoint file (mimscale's or official). ``img_size`` 0 keeps the
    run's size; ``init="random"`` builds the same encoder untrained (the
    baseline every probe is compared against) and needs no checkpoint.
    """
    source, ckpt = Path(run_dir), None
    if source.is_file():
        if checkpoint and Path(checkpoint) != source:
            raise EvalError(f"checkpoint={checkpoint} given with the checkpoint file {source}: give one of them")
        run_cfg, ckpt = _read_file_source(source)
        checkpoint = str(source)
        if not run_cfg and not model:
            raise EvalError(f"{source} holds no config: name its model (model=..., model_kwargs=..., img_size=...)")
    else:
        run_cfg = read_run_config(RunDir(source))
    run_dir = RunDir(source)
    mcfg, dcfg = run_cfg.get("model", {}), run_cfg.get("data", {})
    run_name = mcfg.get("name", "")
    name = model or run_name
    run_kwargs = {"img_size": dcfg.get("img_size"), **(mcfg.get("kwargs") or {})}
    run_kwargs = {k: v for k, v in run_kwargs.items() if v is not None}
    try:
        family, kwargs = model_kwargs(name, **(run_kwargs if name == run_name else {}))
        pretrained = _pretrained_model(run_name, run_kwargs) if name == run_name else None
        geometry = pretrained.finetune_geometry() if pretrained is not None else {}
    except UnknownModelError as e:
        raise EvalError(str(e)) from None
    except (TypeError, ValueError) as e:
        raise EvalError(f"cannot rebuild the run's model '{run_name}': {str(e).splitlines()[0]}") from None
    if img_size or dcfg.get("img_size"):
        kwargs["img_size"] = img_size or dcfg["img_size"]
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = drop_path_rate
    kwargs.update(geometry)
    kwargs.update(overrides or {})

    if init not in ("pretrained", "random"):
        raise EvalError(f"init must be 'pretrained' or 'random', got '{init}'")
    torch.manual_seed(seed)  # random init is part of the result: make it reproducible
    try:
        encoder = build_model(family, **kwargs)
    except (TypeError, ValueError) as e:
        raise EvalError(f"cannot build model '{name}' at img_size {kwargs.get('img_size')}: "
                        f"{str(e).splitlines()[0]}") from None
    if init == "random":
        return LoadedEncoder(encoder, name, kwargs, None, None, run_cfg)

    if checkpoint:
        path = Path(checkpoint)
    else:  # the run's newest checkpoint that loads (a damaged newer one is passed over, with a line)
        path, ckpt = newest_intact([p for _, p in run_dir.list_checkpoints()], "evaluate")
    if path is None or not path.is_file():
        where = checkpoint or run_dir.checkpoints
        raise EvalError(f"no checkpoint found in {where}: pre-train the run first (mimscale pretrain)")
    if ckpt is None:
        ckpt = official.read_checkpoint_file(path)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise EvalError(f"{path} is not a mimscale checkpoint (no 'model' state dict)")
    enc = encoder_state(state)
    if not enc:
        raise EvalError(f"{path} holds no encoder.* weights: not a SimMIM checkpoint (nor an official fine-tuned "
                        f"Swin V2)")
    # The stored geometry buffers (official files) must be those of the pre-training model; a file without a
    # config is checked against the model as built unless its pretrained windows were named explicitly.
    if pretrained is None and not any(getattr(encoder, "pretrained_window_sizes", ())):
        pretrained = encoder
    if pretrained is not None:
        official.check_derived_buffers(enc, pretrained, path)
    load_state_into(encoder, official.without_derived(enc), path, name)
    return LoadedEncoder(encoder, name, kwargs, str(path), ckpt.get("step"), run_cfg)


def load_state_into(encoder: nn.Module, enc: dict, path, name: str) -> None:
    """Strict load with one-line errors. Buffers the model rebuilds itself are skipped, not compared."""
    persistent = set(encoder.state_dict())
    rebuilt = {n for n, _ in encoder.named_buffers()} - persistent
    enc = {k: v for k, v in enc.items() if k not in rebuilt}
    # Shapes are compared after the model's own load hooks run (ViT resizes position tables there),
    # so let load_state_dict try first and only explain what it rejected.
    try:
        result = encoder.load_state_dict(enc, strict=False)
    except (RuntimeError, ValueError):
        own = encoder.state_dict()
        shapes = [(k, (v.shape, own[k].shape)) for k, v in enc.items() if k in own and v.shape != own[k].shape]
        missing = sorted(set(own) - set(enc))
        unexpected = sorted(set(enc) - set(own))
        raise _fit_error(path, name, missing, unexpected, shapes) from None
    if result.missing_keys or result.unexpected_keys:
        raise _fit_error(path, name, list(result.missing_keys), list(result.unexpected_keys), [])
