"""Load a pre-trained encoder from a run directory (docs/METHOD.md, Fine-tuning and other evaluations).

The SimMIM decoder is dropped; position-index buffers are never taken from a checkpoint (the backbones
register them non-persistent and rebuild them for the requested size); the encoder may be built at
another image size or window. A checkpoint that does not fit the requested model is refused with one
line naming what differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from omegaconf import OmegaConf

from mimscale.errors import EvalError, UnknownModelError
from mimscale.models import build_model, model_kwargs
from mimscale.rundir import RunDir
from mimscale.train.checkpoint import load_checkpoint


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
    ckpt = run_dir.latest_checkpoint()
    if ckpt is not None:  # a checkpoint carries the full config too
        cfg = load_checkpoint(ckpt).get("config")
        if isinstance(cfg, dict):
            return cfg
    raise EvalError(f"{run_dir.path} has no config.yaml: not a pre-training run directory")


def _pretrained_geometry(name: str, kwargs: dict) -> dict:
    """The pre-training model's ``finetune_geometry()``, built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        return build_model(name, **kwargs).finetune_geometry()


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
    """The ``encoder.*`` entries of a SimMIM state dict, prefix stripped; the decoder is dropped."""
    if any(k.startswith("module.") for k in state):  # saved from a DDP wrapper
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}


def load_encoder(run_dir: str | Path, *, model: str = "", overrides: dict | None = None, img_size: int = 0,
                 drop_path_rate: float | None = None, checkpoint: str = "", init: str = "pretrained",
                 seed: int = 0) -> LoadedEncoder:
    """Build the run's encoder (or ``model`` with ``overrides``) and load its pre-trained weights.

    ``img_size`` 0 keeps the run's size; ``init="random"`` builds the same encoder untrained (the
    baseline every probe is compared against) and needs no checkpoint.
    """
    run_dir = RunDir(run_dir)
    run_cfg = read_run_config(run_dir)
    mcfg, dcfg = run_cfg.get("model", {}), run_cfg.get("data", {})
    run_name = mcfg.get("name", "")
    name = model or run_name
    run_kwargs = {"img_size": dcfg.get("img_size"), **(mcfg.get("kwargs") or {})}
    run_kwargs = {k: v for k, v in run_kwargs.items() if v is not None}
    try:
        family, kwargs = model_kwargs(name, **(run_kwargs if name == run_name else {}))
        geometry = _pretrained_geometry(run_name, run_kwargs) if name == run_name else {}
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

    path = Path(checkpoint) if checkpoint else run_dir.latest_checkpoint()
    if path is None or not path.is_file():
        where = checkpoint or run_dir.checkpoints
        raise EvalError(f"no checkpoint found in {where}: pre-train the run first (mimscale pretrain)")
    ckpt = load_checkpoint(path)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise EvalError(f"{path} is not a mimscale checkpoint (no 'model' state dict)")
    enc = encoder_state(state)
    if not enc:
        raise EvalError(f"{path} holds no encoder.* weights: not a SimMIM checkpoint")
    load_state_into(encoder, enc, path, name)
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
