"""Fine-tuning as the official code does it (issue 25 items 4, 5, 7; docs/RECIPE.md): the per-group LR of
timm's scheduler over layer-decay groups, full global batches only, the rounded centre crop, and the identity
of results written before these became the defaults."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mimscale.data.transforms import EvalTransform, _resize_hwc, center_offset
from mimscale.engine.schedule import LRSchedule, scaled_lr
from mimscale.errors import EvalError
from mimscale.evaluate import data as D
from mimscale.evaluate.config import as_eval_config, identity, load_eval_config, same_identity
from mimscale.evaluate.engine import Tuner, rank_batches, steps_per_epoch
from mimscale.evaluate.finetune import Classifier
from mimscale.evaluate.layer_decay import layer_decay_optimizer
from mimscale.models import build_model

IMAGENET_1K_TRAIN = 1_281_167

# The paper's fine-tune at the official global batch: 625 steps per epoch, 100 epochs, 20 of warmup.
GLOBAL_BATCH, EPOCHS, WARMUP_EPOCHS = 2048, 100, 20
BASE_LR, WARMUP_LR, MIN_LR = 1.25e-3, 2.5e-7, 2.5e-7  # per 512 images


def official_group_lr(t: int, group_base: float, warmup_lr: float, min_lr: float, warmup_t: int,
                      total: int) -> float:
    """timm 0.4.12 ``CosineLRScheduler._get_lr`` for one group, as microsoft/Swin-Transformer builds it
    (``lr_scheduler.py``: ``warmup_prefix``, ``t_initial = num_steps - warmup_steps``, ``cycle_limit=1``), whose
    base value is the group's initial LR ``base_lr x lr_scale`` (``optimizer.py``, ``get_finetune_param_groups``)."""
    if t < warmup_t:
        return warmup_lr + t * (group_base - warmup_lr) / warmup_t
    t_i, t_curr = total - warmup_t, t - warmup_t
    if t_curr >= t_i:  # past the one cycle: lr_min
        return min_lr
    return min_lr + 0.5 * (group_base - min_lr) * (1 + math.cos(math.pi * t_curr / t_i))


def _paper_schedule(rule: str) -> LRSchedule:
    cfg = load_eval_config(None, [f"batch_size={GLOBAL_BATCH}", f"epochs={EPOCHS}", f"warmup_epochs={WARMUP_EPOCHS}",
                                  f"base_lr={BASE_LR}", f"warmup_lr={WARMUP_LR}", f"min_lr={MIN_LR}"])
    steps = steps_per_epoch(IMAGENET_1K_TRAIN, GLOBAL_BATCH, 16, cfg.drop_last)
    assert steps == 625
    return LRSchedule.in_epochs(cfg, steps, rule)


def _swinv2_b_scales() -> list[float]:
    """The distinct lr_scale of the layer-decay groups of SwinV2-B's depths (2, 2, 18, 2) at a tiny width."""
    enc = build_model("swinv2", img_size=32, patch_size=2, embed_dim=8, depths=(2, 2, 18, 2),
                      num_heads=(1, 1, 1, 1), window_size=2, drop_path_rate=0.0)
    opt = layer_decay_optimizer(Classifier(enc, 10), as_eval_config({"layer_decay": 0.75}))
    return sorted({g["lr_scale"] for g in opt.param_groups})


def test_absolute_rule_is_the_official_per_group_lr_at_warmup_start_peak_and_end():
    schedule = _paper_schedule("absolute")
    peak, warmup_lr, min_lr = (scaled_lr(v, GLOBAL_BATCH) for v in (BASE_LR, WARMUP_LR, MIN_LR))
    warmup_t, total = WARMUP_EPOCHS * 625, EPOCHS * 625
    assert (schedule.warmup_steps, schedule.total) == (12_500, 62_500)
    scales = _swinv2_b_scales()
    assert scales[0] == pytest.approx(0.75 ** 25) and scales[-1] == 1.0  # patch embedding ... head
    for scale in scales:
        for t in (0, 1, warmup_t // 2, warmup_t, warmup_t + 1, (warmup_t + total) // 2, total - 1, total):
            official = official_group_lr(t, peak * scale, warmup_lr, min_lr, warmup_t, total)
            assert schedule.group_lr(t, scale) == pytest.approx(official, rel=1e-12, abs=1e-18), (scale, t)
        assert schedule.group_lr(0, scale) == pytest.approx(1e-6)  # warmup start: absolute for every group
        assert schedule.group_lr(warmup_t, scale) == pytest.approx(5e-3 * scale)  # the group's peak
        assert schedule.group_lr(total, scale) == pytest.approx(1e-6)  # the floor: absolute


def test_scaled_rule_keeps_the_former_lr_and_apply_sets_every_group():
    absolute, scaled = _paper_schedule("absolute"), _paper_schedule("scaled")
    scale = 0.75 ** 25
    for t in (0, 12_500, 62_500):
        assert scaled.group_lr(t, scale) == scaled(t) * scale
    assert scaled.group_lr(0, scale) == pytest.approx(1e-6 * scale)
    assert absolute.group_lr(0, scale) == pytest.approx(1e-6)
    # A group of scale 1 (the head) has the schedule's own LR under either rule, bit for bit.
    assert all(absolute.group_lr(t, 1.0) == scaled.group_lr(t, 1.0) == scaled(t) for t in (0, 777, 40_000))
    params = [nn.Parameter(torch.zeros(1)) for _ in range(3)]
    opt = torch.optim.AdamW([{"params": [params[0]], "lr_scale": scale}, {"params": [params[1]], "lr_scale": 0.5},
                             {"params": [params[2]]}], lr=1.0)
    for rule, schedule in (("absolute", absolute), ("scaled", scaled)):
        assert schedule.apply(opt, 100) == schedule(100), rule
        assert [g["lr"] for g in opt.param_groups] == [schedule.group_lr(100, s) for s in (scale, 0.5, 1.0)]


def test_the_patch_embedding_gets_its_official_share_of_the_lr():
    """What the former rule took from the lowest layer (issue 25 item 4): with the absolute rule the patch
    embedding's summed LR is the official one; the scaled rule gave it about a fifth less, nearly all of it
    lost in the last tenth of training."""
    absolute, scaled = _paper_schedule("absolute"), _paper_schedule("scaled")
    scale, total = 0.75 ** 25, absolute.total
    official = [official_group_lr(t, absolute.peak * scale, absolute.warmup_lr, absolute.min_lr,
                                  absolute.warmup_steps, total) for t in range(total)]
    ours = [absolute.group_lr(t, scale) for t in range(total)]
    old = [scaled.group_lr(t, scale) for t in range(total)]
    assert sum(ours) == pytest.approx(sum(official), rel=1e-9)
    assert 1 - sum(old) / sum(official) == pytest.approx(0.21, abs=0.01)
    tail = slice(total - total // 10, total)
    assert 1 - sum(old[tail]) / sum(official[tail]) == pytest.approx(0.95, abs=0.01)


def test_floor_rule_is_checked():
    with pytest.raises(ValueError, match="floor_rule"):
        LRSchedule(10, 1.0, 1, 0.0, 0.0, floor_rule="relative")


@pytest.mark.parametrize("parts", [1, 2, 16, 32])
def test_steps_per_epoch_drops_the_partial_batch(parts):
    assert steps_per_epoch(IMAGENET_1K_TRAIN, 2048, parts, drop_last=True) == 625 == IMAGENET_1K_TRAIN // 2048
    assert steps_per_epoch(IMAGENET_1K_TRAIN, 2048, parts, drop_last=False) == 626  # the former count
    assert steps_per_epoch(4096, 2048, parts, drop_last=True) == 2


def test_the_epoch_plan_has_only_full_global_batches():
    plan = rank_batches(10, 4, world=1, accum=2, rank=0, seed=0, epoch=0, first=0, drop_last=True)
    assert [(n, [len(m) for m in micro]) for n, micro in plan] == [(4, [2, 2]), (4, [2, 2])]
    assert len(rank_batches(10, 4, 1, 2, 0, 0, 0, 0, drop_last=False)) == 3


class _Points(torch.utils.data.Dataset):
    def __init__(self, n: int):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 2, generator=g), torch.randint(0, 2, (n,), generator=g)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])

    def set_epoch(self, epoch):
        pass


def _tune(n: int, drop_last: bool, epochs: int = 3):
    cfg = as_eval_config({"batch_size": 4, "epochs": epochs, "warmup_epochs": 1, "drop_last": drop_last,
                          "clip_grad": 0.0})
    model = nn.Linear(2, 2)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    ds = _Points(n)
    steps = steps_per_epoch(n, cfg.batch_size, 1, cfg.drop_last)
    schedule = LRSchedule.in_epochs(cfg, steps, cfg.lr_floor_rule)
    tuner = Tuner(model, ds, opt, schedule, cfg, torch.device("cpu"), F.cross_entropy, lambda m: {"top1": 0.5},
                  "top1", None, {}, drop_last=cfg.drop_last)
    return schedule, tuner.run(epochs)


def test_fine_tuning_trains_full_batches_with_the_schedule_of_that_count():
    schedule, tuning = _tune(10, drop_last=True)
    assert schedule.total == 3 * 2 and schedule.warmup_steps == 2
    assert [h["step"] for h in tuning.history] == [2, 4, 6]
    _, tuning = _tune(10, drop_last=False)
    assert [h["step"] for h in tuning.history] == [3, 6, 9]


def test_a_dataset_smaller_than_one_global_batch_is_a_one_line_error():
    with pytest.raises(EvalError, match="fewer than one global batch") as err:
        _tune(3, drop_last=True)
    assert "\n" not in str(err.value)
    _tune(3, drop_last=False, epochs=1)  # the former rule trains the one partial batch
    train, test = D.build_sources("shapes:size=32,pool=20,seed=0,split=probe",
                                  "shapes:size=32,pool=8,seed=0,split=test", 32)
    with pytest.raises(EvalError, match="the training data has 20 images, fewer than one global batch"):
        D.check_data(train, test, as_eval_config({"task": "finetune", "batch_size": 64}))
    D.check_data(train, test, as_eval_config({"task": "knn", "batch_size": 64}))  # probes keep every image


def test_results_written_before_the_new_keys_keep_their_identity():
    new = as_eval_config({"task": "finetune"})
    former = as_eval_config({"task": "finetune", "lr_floor_rule": "scaled", "drop_last": False})
    stored = identity(former)  # what a result written before schema 7 holds: none of the three keys
    assert not {"lr_floor_rule", "drop_last", "jpeg_draft"} & set(stored)
    assert same_identity(stored, former)
    assert not same_identity(stored, new)  # the official rule computes anew
    assert {k: identity(new)[k] for k in ("lr_floor_rule", "drop_last")} == {"lr_floor_rule": "absolute",
                                                                             "drop_last": True}
    full_decode = as_eval_config({"task": "finetune", "lr_floor_rule": "scaled", "drop_last": False,
                                  "jpeg_draft": False})
    assert not same_identity(stored, full_decode)
    # Keys the task does not read stay out of its identity.
    knn = identity(as_eval_config({"task": "knn", "lr_floor_rule": "scaled", "drop_last": False}))
    assert not {"lr_floor_rule", "drop_last"} & set(knn) and "jpeg_draft" not in knn


def test_the_centre_crop_rounds_as_torchvision():
    # 640 x 427 (a typical ImageNet photo) at the official 256 -> 224: resized to 383 x 256, so the centred
    # crop starts at round(159 / 2) = 80 (floor: 79).
    assert center_offset(383, 224) == int(round((383 - 224) / 2.0)) == 80
    assert center_offset(256, 224) == 16 and center_offset(225, 224) == 0 and center_offset(227, 224) == 2
    img = np.random.default_rng(0).integers(0, 256, (427, 640, 3), dtype=np.uint8)
    for picture in (img, np.ascontiguousarray(img.transpose(1, 0, 2))):  # landscape and portrait
        h, w = picture.shape[:2]
        tf = EvalTransform(224, resize=256, interpolation="bicubic", draft=False, round_center=True)
        th, tw = tf._target(h, w)
        assert sorted((th, tw)) == [256, 383]
        full = _resize_hwc(torch.from_numpy(picture), (th, tw), False, "bicubic")
        top, left = int(round((th - 224) / 2.0)), int(round((tw - 224) / 2.0))
        assert torch.equal(tf.crop_resize(picture), full[:, top:top + 224, left:left + 224])
        floor = full[:, (th - 224) // 2:(th - 224) // 2 + 224, (tw - 224) // 2:(tw - 224) // 2 + 224]
        assert not torch.equal(tf.crop_resize(picture), floor)
        # Pre-training's validation keeps its floored crop (its losses stay comparable across versions).
        pretrain_val = EvalTransform(224, resize=256, interpolation="bicubic", draft=False)
        assert torch.equal(pretrain_val.crop_resize(picture), floor)
    # The evaluation data use the rounded crop.
    data = D.ClassificationData(_Pictures(img), 224, test_crop=224 / 256, interpolation="bicubic", jpeg_draft=False)
    assert data.eval_tf.round_center
    assert torch.equal(data.eval_tf.crop_resize(img), EvalTransform(224, resize=256, interpolation="bicubic",
                                                                    draft=False, round_center=True).crop_resize(img))


class _Pictures:
    def __init__(self, img):
        self.img = img

    def __len__(self):
        return 1

    def labels(self):
        return np.zeros(1, dtype=np.int64)

    def load(self, i):
        return self.img


def test_segmentation_masks_follow_the_images_crop():
    img = np.zeros((427, 640, 3), dtype=np.uint8)
    source = _Pictures(img)
    source.segmentation = lambda i: np.zeros((427, 640), dtype=np.uint8)
    assert D.SegmentationData(source, 224).tf.round_center  # the image: rounded, as its mask below
    cols = torch.arange(640).repeat(427, 1)  # each pixel's value: its column
    mask = D._resize_crop_mask(cols, 224)
    full = F.interpolate(cols[None, None].float(), size=(224, int(224 * 640 / 427)), mode="nearest")[0, 0].long()
    left = int(round((full.shape[1] - 224) / 2.0))
    assert torch.equal(mask, full[:, left:left + 224])
