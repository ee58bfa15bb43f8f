"""Reconstruction pictures: for fixed held-out images, one row each of
original | masked input | reconstruction | reconstruction pasted into the visible pixels."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mimscale.objectives.simmim import SimMIM, local_stats
from mimscale.rundir import atomic_write_bytes

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_uint8(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    x = (x.float().cpu() * s + m).clamp(0, 1)
    return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


@torch.no_grad()
def reconstruction_grid(model: SimMIM, img: torch.Tensor, mask: torch.Tensor, scale: int = 1) -> Image.Image:
    """A PIL image with one row per input image and four columns (see module docstring)."""
    was_training = model.training
    model.eval()
    out = model(img, mask)
    model.train(was_training)
    img = img.float().cpu()
    pred = out.pred.float().cpu()
    m = out.mask.float().cpu()
    if model.norm_target:  # predictions are in locally standardised units: undo with the image's stats
        mean, std = local_stats(img, model.norm_target_window)
        pred = pred * std + mean
    masked_input = img * (1 - m) + m * torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1).sub(
        torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)).div(torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
    pasted = img * (1 - m) + pred * m
    cols = [_to_uint8(t) for t in (img, masked_input, pred, pasted)]
    rows = [np.concatenate([c[i] for c in cols], axis=1) for i in range(img.shape[0])]
    grid = np.concatenate(rows, axis=0)
    picture = Image.fromarray(grid)
    if scale > 1:
        picture = picture.resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    return picture


def save_reconstruction(model: SimMIM, img: torch.Tensor, mask: torch.Tensor, path: Path) -> Path:
    size = img.shape[-1]
    picture = reconstruction_grid(model, img, mask, scale=max(1, 96 // size))
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)
