"""The paper studies fine-tune with the official ImageNet-1K recipe (issue 25): every eval entry of
studies/paper.yaml and studies/paper-shared.yaml, resolved, against the official values of
microsoft/Swin-Transformer's SwinV2-B fine-tuning (docs/RECIPE.md)."""

import pytest

from mimscale.engine.schedule import LRSchedule, scaled_lr
from mimscale.evaluate.config import from_spec
from mimscale.evaluate.engine import steps_per_epoch
from mimscale.study.spec import load_study

IMAGENET_1K_TRAIN = 1_281_167
OFFICIAL_PROCESSES, OFFICIAL_PER_PROCESS_BATCH = 16, 128


@pytest.mark.parametrize("study", ["studies/paper.yaml", "studies/paper-shared.yaml"])
def test_every_paper_eval_resolves_to_the_official_recipe(study):
    evals = load_study(study).evals
    assert [e["task"] for e in evals] == ["finetune"]
    for spec in evals:
        cfg = from_spec(spec)
        global_batch = cfg.batch_size
        assert global_batch == OFFICIAL_PROCESSES * OFFICIAL_PER_PROCESS_BATCH * cfg.accum_steps == 2048
        assert scaled_lr(cfg.base_lr, global_batch) == pytest.approx(5e-3)
        assert scaled_lr(cfg.warmup_lr, global_batch) == pytest.approx(1e-6)
        # Full batches per epoch: the official train loader drops the tail (drop_last=True), whatever the split.
        for parts in (1, OFFICIAL_PROCESSES * cfg.accum_steps, 32):
            assert steps_per_epoch(IMAGENET_1K_TRAIN, global_batch, parts, cfg.drop_last) == 625
        schedule = LRSchedule.in_epochs(cfg, 625, cfg.lr_floor_rule)
        assert (schedule.total, schedule.warmup_steps) == (62_500, 12_500)
        # timm's scheduler over layer-decay groups: absolute warmup start and floor (docs/METHOD.md).
        assert cfg.lr_floor_rule == "absolute" and schedule.group_lr(0, 0.75 ** 25) == pytest.approx(1e-6)
        # fp32 as the official forward (no autocast); full JPEG decodes as the official loader.
        assert cfg.precision == "fp32" and cfg.jpeg_draft is False
        assert (cfg.epochs, cfg.warmup_epochs, cfg.num_workers) == (100, 20, 8)
        assert (cfg.layer_decay, cfg.weight_decay, cfg.drop_path, cfg.clip_grad) == (0.75, 0.05, 0.1, 5.0)
        assert (cfg.mixup, cfg.cutmix, cfg.label_smoothing, cfg.reprob) == (0.8, 1.0, 0.1, 0.25)
        assert (cfg.randaug_n, cfg.randaug_m, cfg.randaug_mstd) == (2, 9, 0.5)
        assert (cfg.img_size, dict(cfg.model_kwargs), cfg.test_crop, cfg.interpolation) == (
            224, {"window_size": 14}, 0.875, "bicubic")
        assert cfg.train_source == "folder:/data/imagenet/train" and cfg.test_source == "folder:/data/imagenet/val"


def test_study_plan_shows_the_fine_tuning_as_it_will_run(capsys):
    """`study plan --json` states each fine-tuning eval's global batch, LRs scaled to it, floor rule and
    precision (the data is not on this machine: the plan is printed, then the missing data refused, exit 2)."""
    import json

    from mimscale.cli import main

    assert main(["study", "plan", "studies/paper.yaml", "--json", "--no-flops"]) == 2
    (tuning,) = json.loads(capsys.readouterr().out)["tuning"]
    assert (tuning["name"], tuning["global_batch"], tuning["lr_floor_rule"], tuning["precision"]) == (
        "finetune", 2048, "absolute", "fp32")
    assert (tuning["peak_lr"], tuning["warmup_lr"], tuning["min_lr"]) == pytest.approx((5e-3, 1e-6, 1e-6))
    assert tuning["drop_last"] is True and tuning["steps_per_epoch"] == {}  # no ImageNet here to count
