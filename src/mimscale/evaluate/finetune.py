"""End-to-end fine-tuning (docs/METHOD.md, Fine-tuning and other evaluations): layer-wise LR decay, drop path, label smoothing,
mixup / cutmix, RandAugment, random erasing, warmup + cosine in iterations, evaluation every epoch.

Reports the best top-1 over per-epoch evaluations (the paper's convention) *and* the final one.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mimscale.evaluate.augment import MixupCutmix, random_erasing, soft_cross_entropy
from mimscale.evaluate.data import ClassificationData, loader
from mimscale.evaluate.layer_decay import param_groups_layer_decay
from mimscale.evaluate.probes import topk_accuracy
from mimscale.models.layers import trunc_normal_
from mimscale.train.optim import adamw
from mimscale.train.schedule import lr_at, scaled_lr


class Classifier(nn.Module):
    """Backbone -> ``forward_features`` (after the final norm) -> global average pool -> linear head."""

    def __init__(self, encoder: nn.Module, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.num_features, num_classes)
        trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.forward_features(x).mean(dim=(2, 3)))


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Schedule:
    """Warmup + cosine over optimizer steps; every group gets ``lr * group['lr_scale']`` (layer decay)."""

    def __init__(self, cfg, steps_per_epoch: int):
        self.total = max(1, cfg.epochs * steps_per_epoch)
        self.warmup = min(self.total, round(cfg.warmup_epochs * steps_per_epoch))
        self.peak = scaled_lr(cfg.base_lr, cfg.batch_size)
        self.warmup_lr = scaled_lr(cfg.warmup_lr, cfg.batch_size)
        self.min_lr = scaled_lr(cfg.min_lr, cfg.batch_size)

    def apply(self, optimizer, step: int) -> float:
        lr = lr_at(step, self.total, self.peak, self.warmup, self.warmup_lr, self.min_lr)
        for g in optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        return lr


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    groups = param_groups_layer_decay(model, cfg.weight_decay, cfg.layer_decay)
    for g in groups:
        g.pop("names")  # optimizer state stays small; the names are for inspection and tests
    return adamw(groups, scaled_lr(cfg.base_lr, cfg.batch_size))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@torch.no_grad()
def evaluate_classifier(model, data_loader, device, precision: str) -> dict:
    model.eval()
    scores, labels = [], []
    for x, y in data_loader:
        with autocast(device, precision):
            scores.append(model(x.to(device)).float().cpu())
        labels.append(y)
    scores, labels = torch.cat(scores), torch.cat(labels)
    out = topk_accuracy(scores, labels)
    out["loss"] = F.cross_entropy(scores, labels).item()
    return out


def train_one_epoch(model, data_loader, optimizer, schedule, step: int, cfg, device, loss_fn, batch_fn=None):
    """One pass; returns (next step, mean loss). ``batch_fn(x, y, rng)`` -> (x, target) augments on the
    batch (mixup etc.); ``loss_fn(output, target)``. Non-finite losses stop the run with a clear error."""
    model.train()
    rng = np.random.default_rng([cfg.seed, 0xB17C, step])
    total, n = 0.0, 0
    for x, y in data_loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if batch_fn is not None:
            x, y = batch_fn(x, y, rng)
        schedule.apply(optimizer, step)
        with autocast(device, cfg.precision):
            out = model(x)
        loss = loss_fn(out.float(), y)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"non-finite loss at step {step}; lower base_lr or use precision=fp32")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        optimizer.step()
        step += 1
        total += loss.item() * len(x)
        n += len(x)
    return step, total / max(n, 1)


def finetune(encoder, train_src, test_src, num_classes: int, cfg, device, img_size: int) -> dict:
    model = Classifier(encoder, num_classes).to(device)
    randaug = (cfg.randaug_n, cfg.randaug_m, cfg.randaug_mstd)
    train_ds = ClassificationData(train_src, img_size, train=True, seed=cfg.seed, crop_scale=cfg.crop_scale,
                                  hflip=cfg.hflip, randaug=randaug)
    test_ds = ClassificationData(test_src, img_size, test_crop=cfg.test_crop, interpolation=cfg.interpolation)
    test_dl = loader(test_ds, cfg.batch_size, False, cfg.num_workers, cfg.seed)
    steps_per_epoch = math.ceil(len(train_ds) / cfg.batch_size)
    schedule = Schedule(cfg, steps_per_epoch)
    optimizer = build_optimizer(model, cfg)
    mix = MixupCutmix(num_classes, cfg.mixup, cfg.cutmix, cfg.mixup_prob, cfg.mixup_switch_prob,
                      cfg.label_smoothing)

    def batch_fn(x, y, rng):
        # Random erasing per sample before mixup / cutmix, as timm's loader does it (the official fine-tune):
        # an erased box is then blended like the rest of its image.
        x = random_erasing(x, cfg.reprob, rng)
        return mix(x, y, rng)  # soft targets, label smoothing included

    step, history, best = 0, [], None
    for epoch in range(cfg.epochs):
        train_ds.set_epoch(epoch)
        dl = loader(train_ds, cfg.batch_size, True, cfg.num_workers, cfg.seed, epoch)
        t0 = time.time()
        step, train_loss = train_one_epoch(model, dl, optimizer, schedule, step, cfg, device,
                                           soft_cross_entropy, batch_fn)
        if (epoch + 1) % cfg.eval_every and epoch + 1 != cfg.epochs:
            continue
        res = {"epoch": epoch + 1, "step": step, "train_loss": train_loss, **evaluate_classifier(
            model, test_dl, device, cfg.precision)}
        history.append(res)
        if best is None or res["top1"] > best["top1"]:
            best = res
        log(f"[finetune] epoch {epoch + 1}/{cfg.epochs} train_loss {train_loss:.4f} top1 {res['top1']:.4f} "
            f"best {best['top1']:.4f} ({time.time() - t0:.1f}s)")
    final = history[-1]
    metrics = {"top1": best["top1"], "best_epoch": best["epoch"], "final_top1": final["top1"],
               "final_epoch": final["epoch"]}
    if "top5" in best:
        metrics.update(top5=best["top5"], final_top5=final["top5"])
    notes = (f"top1/top5: best over per-epoch evaluations (epoch {best['epoch']}; the paper's convention); "
             f"final_top1/final_top5: after the last epoch")
    return {"metrics": metrics, "history": history, "notes": notes}
