"""Semantic segmentation: multi-scale backbone features, a light FPN head, cross-entropy, mIoU.

Scales come from ``forward_intermediates`` without knowing the architecture: the last block at each
distinct resolution is one pyramid level (Swin: one per stage). A single-resolution backbone (ViT)
gets the simple pyramid of ViTDet: up to four evenly spaced blocks, resampled to 4x, 2x, 1x and 0.5x.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from mimscale.engine import distributed as dist
from mimscale.engine.runtime import autocast
from mimscale.engine.schedule import LRSchedule
from mimscale.evaluate.data import SegmentationData, loader
from mimscale.evaluate.engine import Tuner, shard, steps_per_epoch
from mimscale.evaluate.layer_decay import layer_decay_optimizer

_VIT_SCALES = (4.0, 2.0, 1.0, 0.5)


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map: raw block outputs differ in scale by stage."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = nn.LayerNorm(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def pyramid_plan(maps: list[torch.Tensor]) -> tuple[list[int], list[float]]:
    """Which intermediate maps feed the head, and the resampling factor of each."""
    last_at = {}
    for i, m in enumerate(maps):
        last_at[tuple(m.shape[-2:])] = i  # a later block at the same resolution replaces an earlier one
    if len(last_at) > 1:
        return sorted(last_at.values()), [1.0] * len(last_at)
    n = len(maps)
    k = min(len(_VIT_SCALES), n)
    picks = sorted({round((j + 1) * n / k) - 1 for j in range(k)})
    return picks, list(_VIT_SCALES[len(_VIT_SCALES) - len(picks):])


class SegmentationModel(nn.Module):
    """FPN-lite: per level ChannelNorm + 1x1 lateral conv to ``width``; top-down upsample-add; a 3x3
    conv per level; all levels upsampled to the finest and summed; 1x1 classifier; bilinear to input."""

    def __init__(self, encoder: nn.Module, num_classes: int, width: int, img_size: int, freeze: bool):
        super().__init__()
        self.encoder, self.freeze = encoder, freeze
        if freeze:
            encoder.requires_grad_(False)
        with torch.no_grad():
            was = encoder.training
            device = next(encoder.parameters()).device
            probe = encoder.eval().forward_intermediates(torch.zeros(1, 3, img_size, img_size, device=device))
            encoder.train(was)
        self.picks, self.scales = pyramid_plan(probe)
        chans = [probe[i].shape[1] for i in self.picks]
        self.norms = nn.ModuleList(ChannelNorm(c) for c in chans)
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in chans)
        self.smooth = nn.ModuleList(nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False),
                                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True)) for _ in chans)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.freeze:
            self.encoder.eval()  # frozen: no drop path, and no gradient through the backbone
            with torch.no_grad():
                maps = self.encoder.forward_intermediates(x)
        else:
            maps = self.encoder.forward_intermediates(x)
        feats = []
        for j, i in enumerate(self.picks):
            f = self.lateral[j](self.norms[j](maps[i]))
            if self.scales[j] != 1.0:
                f = F.interpolate(f, scale_factor=self.scales[j], mode="bilinear", align_corners=False)
            feats.append(f)
        order = sorted(range(len(feats)), key=lambda j: feats[j].shape[-1])  # coarsest first
        for a, b in zip(order, order[1:]):  # top-down: each finer level adds the coarser one
            feats[b] = feats[b] + F.interpolate(feats[a], size=feats[b].shape[-2:], mode="bilinear",
                                                align_corners=False)
        size = feats[order[-1]].shape[-2:]
        fused = sum(F.interpolate(self.smooth[j](f), size=size, mode="bilinear", align_corners=False)
                    for j, f in enumerate(feats))
        return F.interpolate(self.classifier(fused), size=x.shape[-2:], mode="bilinear", align_corners=False)


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore: int) -> torch.Tensor:
    keep = target != ignore
    idx = target[keep] * num_classes + pred[keep]
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_metrics(conf: torch.Tensor) -> dict:
    """mIoU as mmseg computes it: per-class intersection / union, averaged over classes with a
    non-empty union (present in the ground truth or predicted); plus pixel accuracy."""
    conf = conf.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
    valid = ~torch.isnan(iou)
    return {"miou": iou[valid].mean().item(), "pixel_acc": (tp.sum() / conf.sum().clamp_min(1)).item(),
            "iou_per_class": [None if math.isnan(v) else v for v in iou.tolist()]}


@torch.no_grad()
def evaluate_segmentation(model, dataset, cfg, num_classes: int, device) -> dict:
    """mIoU and pixel accuracy over ``dataset``, each rank on its shard (confusion matrices summed)."""
    model.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long)
    subset = torch.utils.data.Subset(dataset, shard(len(dataset)))
    for x, y in loader(subset, cfg.batch_size, False, cfg.num_workers, cfg.seed):
        with autocast(device, cfg.precision):
            pred = model(x.to(device)).argmax(1).cpu()
        conf += confusion(pred, y, num_classes, cfg.ignore_index)
    return iou_metrics(dist.all_reduce_sum(conf))


def majority_baseline(train_ds, test_dl, num_classes: int, ignore: int) -> dict:
    """Predict the most frequent training class at every pixel: the floor a head must beat."""
    counts = torch.zeros(num_classes, dtype=torch.long)
    for i in range(len(train_ds)):
        m = train_ds.mask(i)
        m = m[(m != ignore) & (m < num_classes)]
        counts += torch.bincount(m, minlength=num_classes)
    majority = int(counts.argmax())
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for _, y in test_dl:
        conf += confusion(torch.full_like(y, majority), y, num_classes, ignore)
    return {**iou_metrics(conf), "class": majority}


def segment(encoder, train_src, test_src, num_classes: int, cfg, device, img_size: int,
            state_path: Path | None = None, identity: dict | None = None) -> dict:
    model = SegmentationModel(encoder, num_classes, cfg.seg_width, img_size, cfg.freeze_backbone).to(device)
    label_map = dict(cfg.seg_label_map)
    train_ds = SegmentationData(train_src, img_size, train=True, seed=cfg.seed, hflip=cfg.hflip, label_map=label_map)
    test_ds = SegmentationData(test_src, img_size, label_map=label_map)
    test_dl = loader(test_ds, cfg.batch_size, False, cfg.num_workers, cfg.seed)
    schedule = LRSchedule.in_epochs(cfg, steps_per_epoch(len(train_ds), cfg.batch_size, dist.world_size() * cfg.accum_steps))
    optimizer = layer_decay_optimizer(model, cfg)

    def loss_fn(logits, target):
        return F.cross_entropy(logits, target, ignore_index=cfg.ignore_index)

    tuning = Tuner(model, train_ds, optimizer, schedule, cfg, device, loss_fn,
                   lambda m: evaluate_segmentation(m, test_ds, cfg, num_classes, device), "miou", state_path,
                   identity or {}, tag="segment").run(cfg.epochs)
    history, best = tuning.history, tuning.best
    base = majority_baseline(train_ds, test_dl, num_classes, cfg.ignore_index)
    final = history[-1]
    metrics = {"miou": best["miou"], "pixel_acc": best["pixel_acc"], "best_epoch": best["epoch"],
               "final_miou": final["miou"], "final_pixel_acc": final["pixel_acc"],
               "baseline_miou": base["miou"], "baseline_pixel_acc": base["pixel_acc"],
               "iou_per_class": best["iou_per_class"], "num_classes": num_classes}
    notes = (f"miou/pixel_acc: best over per-epoch evaluations (epoch {best['epoch']}); final_*: after the last "
             f"epoch; baseline_*: predicting the majority training class (class {base['class']}) everywhere; "
             f"mIoU averages classes with a non-empty union (mmseg convention)")
    history = [{k: v for k, v in h.items() if k != "iou_per_class"} for h in history]
    return {"metrics": metrics, "history": history, "notes": notes}
