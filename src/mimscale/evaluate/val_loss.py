"""The held-out SimMIM loss of any checkpoint (``mimscale val-loss``, ``cli.py``), with the study's validation
protocol (deterministic transform, a fixed mask per image, the run's loss and target).

CHECKPOINT is one of
- a mimscale run directory or checkpoint file: its own config is the protocol;
- an official SimMIM checkpoint (microsoft/Swin-Transformer, the released Swin V2 models): a file as the
  official ``save_checkpoint`` writes it carries its config, which gives the model and the recipe; for a
  weights-only file give them, e.g. ``-c pretrain/swinv2-paper.yaml model.name=swinv2-b`` (192 px, 32 px mask units, ratio
  0.6, normalised target) or ``model.name=swinv2-b data.img_size=192 ...``. A protocol of another geometry
  than the file's (its config, or the position tables it stores) is refused;
- a ``transformers`` ``*ForMaskedImageModeling`` directory (``save_pretrained``), with its recipe likewise.
The weights load strictly: a checkpoint that does not fit the model is refused with one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from mimscale import config as C
from mimscale import data as D
from mimscale.engine.checkpoint import newest_intact
from mimscale.engine.distributed import resolve_device
from mimscale.errors import EvalError
from mimscale.evaluate.loading import load_state_into
from mimscale.models import official
from mimscale.objectives.simmim import SimMIM
from mimscale.rundir import RunDir
from mimscale.train.inputs import EVAL_BATCH, fixed_mask_set, mask_generator
from mimscale.train.setup import build_simmim
from mimscale.train.step import reconstruction_loss


def _recipe(base: dict | None, config: str | None, overrides: list[str], source: Path | None = None) -> DictConfig:
    """The protocol: a mimscale checkpoint's own config (else the defaults) < -c file < key=value overrides."""
    if base is not None:
        try:  # the file's own config is input like any other: a malformed one is one line naming the file
            merged = OmegaConf.to_object(C.merge(OmegaConf.structured(C.Config()), base, "it"))
        except C.ConfigError as e:
            raise EvalError(f"{source}: the config stored in the checkpoint is malformed: {e}") from None
        return C.load_config(config, overrides, base=merged)
    # The pre-training schema requires a length; it plays no part in a validation loss.
    return C.load_config(config, overrides if config else ["train.iters=1", *overrides])


def load_for_val_loss(path: Path, config: str | None, overrides: list[str]) -> tuple[torch.nn.Module, DictConfig, str]:
    """(SimMIM model with the checkpoint's weights, the protocol config, the format's name)."""
    if path.is_dir() and (path / "config.json").is_file():
        from mimscale.models.hf import (
            copy_decoder_from_transformers,
            from_transformers,
            load_transformers_dir,
        )

        cfg = _recipe(None, config, overrides)
        hf = load_transformers_dir(path)
        try:
            model = SimMIM(from_transformers(hf), norm_target=cfg.objective.norm_target,
                           norm_target_window=cfg.objective.norm_target_window)
            copy_decoder_from_transformers(hf, model)
        except (ValueError, AttributeError) as e:
            raise EvalError(f"{path}: cannot use this transformers model: {str(e).splitlines()[0]}") from None
        return model, cfg, "transformers"
    if path.is_dir():
        # the newest checkpoint that loads (a damaged newer one is passed over, with a line)
        latest, ckpt = newest_intact([p for _, p in RunDir(path).list_checkpoints()], "val-loss")
        if latest is None:
            raise EvalError(f"{path} holds no checkpoint (not a run directory with checkpoints/)")
        path = latest
    elif not path.is_file():
        raise EvalError(f"checkpoint not found: {path}")
    else:
        ckpt = official.read_checkpoint_file(path)
    state = ckpt.get("model")
    if not isinstance(state, dict):
        raise EvalError(f"{path} holds no 'model' state dict")
    not_tensor = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
    if not_tensor is not None:
        raise EvalError(f"{path}: weight '{not_tensor}' is a {type(state[not_tensor]).__name__}, not a tensor")
    state = official.canonical_state(state)  # `module.` stripped before the format is recognised
    mine = isinstance(ckpt.get("config"), dict) and "train" in ckpt["config"]
    stored = (official.run_config(ckpt["config"], official.is_official_simmim(state))
              if not mine and isinstance(ckpt.get("config"), dict) else None)
    base = {**stored, "train": {"iters": 1}} if stored else None  # the schema wants a length; it plays no part
    cfg = _recipe(ckpt["config"] if mine else base, config, overrides, path)
    fmt = "mimscale" if mine else "official"
    if not mine and not official.is_official_simmim(state):
        what = ("an official fine-tuned checkpoint (no SimMIM decoder): the loss needs a pre-training one"
                if official.is_official_finetuned(state) else
                "neither a mimscale nor an official SimMIM checkpoint (no encoder.* and decoder.0.* weights)")
        raise EvalError(f"{path} is {what}")
    model = build_simmim(cfg)
    if stored is not None:  # the file's own config is its geometry: a protocol that changes it is refused
        official.check_geometry(stored, model.encoder, path)
    official.check_derived_buffers(state, model, path)
    state = official.without_derived(state)
    load_state_into(model, state, path, cfg.model.name)
    return model, cfg, fmt


def val_loss(checkpoint: str | Path, data: str, config: str | None = None, overrides: list[str] = ()) -> dict:
    model, cfg, fmt = load_for_val_loss(Path(checkpoint), config, list(overrides))
    device = resolve_device(cfg.device)
    d = cfg.data
    source = D.build_source(data)
    indices = np.arange(len(source.ids), dtype=np.int64)
    if d.val_size > 0:
        indices = indices[: d.val_size]  # the study's rule: a prefix of the stable held-out order
    dataset, excluded = fixed_mask_set(d, source, indices, mask_generator(d, model.encoder.patch_size))
    loader = D.build_val_loader(dataset, EVAL_BATCH, 0, 0, 1)
    model = model.to(device).eval()
    loss = reconstruction_loss(model, ((b["img"], b["mask"]) for b in loader), device, cfg.train.precision)
    return {"val_loss": loss, "images": len(dataset), "excluded": len(excluded), "format": fmt,
            "checkpoint": str(checkpoint), "data": data, "model": cfg.model.name, "img_size": d.img_size,
            "mask_patch_size": d.mask_patch_size, "mask_ratio": d.mask_ratio, "norm_target": cfg.objective.norm_target,
            "val_mask_seed": d.val_mask_seed}
