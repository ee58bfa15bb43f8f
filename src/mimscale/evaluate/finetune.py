"""End-to-end fine-tuning (docs/METHOD.md, Fine-tuning and other evaluations): layer-wise LR decay, drop path, label smoothing,
mixup / cutmix, RandAugment, random erasing, warmup + cosine in iterations, evaluation every epoch.

Reports the best top-1 over per-epoch evaluations (the paper's convention) *and* the final one.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from mimscale.engine import distributed as dist
from mimscale.engine.runtime import autocast
from mimscale.engine.schedule import LRSchedule
from mimscale.evaluate.augment import MixupCutmix, random_erasing, soft_cross_entropy
from mimscale.evaluate.data import ClassificationData, loader
from mimscale.evaluate.engine import Tuner, shard, steps_per_epoch
from mimscale.evaluate.layer_decay import layer_decay_optimizer
from mimscale.evaluate.probes import topk_accuracy
from mimscale.models.layers import trunc_normal_


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


@torch.no_grad()
def evaluate_classifier(model, dataset, cfg, device) -> dict:
    """Top-1/top-5 and loss over ``dataset``, each rank scoring its shard (gathered, so every rank agrees)."""
    model.eval()
    subset = torch.utils.data.Subset(dataset, shard(len(dataset)))
    scores, labels = [], []
    for x, y in loader(subset, cfg.batch_size, False, cfg.num_workers, cfg.seed):
        with autocast(device, cfg.precision):
            scores.append(model(x.to(device)).float().cpu())
        labels.append(y)
    parts = dist.all_gather_object((torch.cat(scores) if scores else torch.zeros(0, 0),
                                    torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)))
    scores = torch.cat([p[0] for p in parts if len(p[1])])
    labels = torch.cat([p[1] for p in parts if len(p[1])])
    out = topk_accuracy(scores, labels)
    out["loss"] = F.cross_entropy(scores, labels).item()
    return out


def finetune(encoder, train_src, test_src, num_classes: int, cfg, device, img_size: int,
             state_path: Path | None = None, identity: dict | None = None) -> dict:
    model = Classifier(encoder, num_classes).to(device)
    randaug = (cfg.randaug_n, cfg.randaug_m, cfg.randaug_mstd)
    train_ds = ClassificationData(train_src, img_size, train=True, seed=cfg.seed, crop_scale=cfg.crop_scale,
                                  hflip=cfg.hflip, randaug=randaug, interpolation=cfg.interpolation,
                                  jpeg_draft=cfg.jpeg_draft)
    test_ds = ClassificationData(test_src, img_size, test_crop=cfg.test_crop, interpolation=cfg.interpolation,
                                 jpeg_draft=cfg.jpeg_draft)
    optimizer = layer_decay_optimizer(model, cfg)
    parts = dist.world_size() * cfg.accum_steps
    # The Tuner plans every epoch, and resumes, with this same count (drop_last: full global batches only).
    steps = steps_per_epoch(len(train_ds), cfg.batch_size, parts, cfg.drop_last)
    schedule = LRSchedule.in_epochs(cfg, steps, cfg.lr_floor_rule)
    mix = MixupCutmix(num_classes, cfg.mixup, cfg.cutmix, cfg.mixup_prob, cfg.mixup_switch_prob,
                      cfg.label_smoothing)

    def batch_fn(x, y, rng):
        # Random erasing per sample before mixup / cutmix, as timm's loader does it (the official fine-tune):
        # an erased box is then blended like the rest of its image.
        x = random_erasing(x, cfg.reprob, rng)
        return mix(x, y, rng)  # soft targets, label smoothing included

    tuning = Tuner(model, train_ds, optimizer, schedule, cfg, device, soft_cross_entropy,
                   lambda m: evaluate_classifier(m, test_ds, cfg, device), "top1", state_path, identity or {},
                   batch_fn, tag="finetune", drop_last=cfg.drop_last).run(cfg.epochs)
    best, final = tuning.best, tuning.history[-1]
    metrics = {"top1": best["top1"], "best_epoch": best["epoch"], "final_top1": final["top1"],
               "final_epoch": final["epoch"]}
    if "top5" in best:
        metrics.update(top5=best["top5"], final_top5=final["top5"])
    notes = (f"top1/top5: best over per-epoch evaluations (epoch {best['epoch']}; the paper's convention); "
             f"final_top1/final_top5: after the last epoch; global batch {cfg.batch_size} over "
             f"{dist.world_size()} process(es) x {cfg.accum_steps} accumulation step(s), {steps} steps per epoch")
    return {"metrics": metrics, "history": tuning.history, "notes": notes}
