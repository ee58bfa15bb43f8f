"""The paper studies fine-tune with the official ImageNet-1K recipe (issue 25): every eval entry of
studies/paper.yaml and studies/paper-shared.yaml, resolved, against the official values of
microsoft/Swin-Transformer's SwinV2-B fine-tuning (docs/RECIPE.md)."""

import pytest

from mimscale.engine.schedule import scaled_lr
from mimscale.evaluate.config import from_spec
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
        assert IMAGENET_1K_TRAIN // global_batch == 625  # full batches per epoch (the official loader drops the tail)
        assert (cfg.epochs, cfg.warmup_epochs, cfg.num_workers) == (100, 20, 8)
        assert (cfg.layer_decay, cfg.weight_decay, cfg.drop_path, cfg.clip_grad) == (0.75, 0.05, 0.1, 5.0)
        assert (cfg.mixup, cfg.cutmix, cfg.label_smoothing, cfg.reprob) == (0.8, 1.0, 0.1, 0.25)
        assert (cfg.randaug_n, cfg.randaug_m, cfg.randaug_mstd) == (2, 9, 0.5)
        assert (cfg.img_size, dict(cfg.model_kwargs), cfg.test_crop, cfg.interpolation) == (
            224, {"window_size": 14}, 0.875, "bicubic")
        assert cfg.train_source == "folder:/data/imagenet/train" and cfg.test_source == "folder:/data/imagenet/val"
