"""The official recipe where mimscale offers a choice: pre-training weight decay of the position-bias MLP,
warmup as a fraction of the run, full JPEG decoding, the fine-tune test geometry."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mimscale.config import load_config, run_id
from mimscale.data import EvalTransform
from mimscale.engine.schedule import LRSchedule
from mimscale.models import build_model
from mimscale.objectives.simmim import SimMIM
from mimscale.train.optim import pretrain_optimizer

REPO = Path(__file__).resolve().parents[2]


def _no_decay(opt) -> set[int]:
    return {id(p) for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}


def test_decay_position_bias_reproduces_the_official_pretraining_groups():
    model = SimMIM(build_model("swinv2-cpu-s"))
    names = {id(p): n for n, p in model.named_parameters()}
    intent = {names[i] for i in _no_decay(pretrain_optimizer(model, 1e-3, 0.05, (0.9, 0.999), 1e-8))}
    official = {names[i] for i in _no_decay(pretrain_optimizer(model, 1e-3, 0.05, (0.9, 0.999), 1e-8, True))}
    # The official rule: 1-D parameters, biases and the mask token (its other keywords, prefixed with
    # "encoder.", never match a parameter name as substrings).
    rule = {n for n, p in model.named_parameters() if p.ndim == 1 or n.endswith(".bias") or n == "encoder.mask_token"}
    assert official == rule
    moved = intent - official
    assert moved and all("cpb_mlp" in n or "logit_scale" in n for n in moved)
    assert any(n.endswith("cpb_mlp.0.weight") for n in moved) and any(n.endswith("logit_scale") for n in moved)


def test_paper_configs_use_the_official_recipe_values():
    cfg = load_config("pretrain/swinv2-paper.yaml")
    assert cfg.train.decay_position_bias and not cfg.data.jpeg_draft
    assert [LRSchedule.from_config(cfg.train, n).warmup_steps for n in (125_000, 250_000, 500_000)] == [1562, 3125, 6250]
    assert 10 / 800 == cfg.train.warmup_fraction  # 10 of the official 800 epochs


def test_new_keys_at_their_neutral_values_keep_run_ids():
    base = load_config(None, ["train.iters=10"])
    assert run_id(load_config(None, ["train.iters=10", "data.jpeg_draft=true"])) == run_id(base)
    assert run_id(load_config(None, ["train.iters=10", "train.decay_position_bias=false"])) == run_id(base)
    assert run_id(load_config(None, ["train.iters=10", "data.jpeg_draft=false"])) != run_id(base)
    assert run_id(load_config(None, ["train.iters=10", "train.decay_position_bias=true"])) != run_id(base)


def _jpeg(w: int, h: int) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([(xx * 7 + yy * 3) % 256, (xx * 2 + yy * 5) % 256, (xx ^ yy) % 256], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return Image.open(io.BytesIO(buf.getvalue()))


def test_jpeg_draft_switch_changes_the_decode_of_large_jpegs():
    full = EvalTransform(64, draft=False)(_jpeg(1024, 768))
    draft = EvalTransform(64, draft=True)(_jpeg(1024, 768))
    assert full.shape == draft.shape == (3, 64, 64)
    assert 0 < float((full - draft).abs().mean()) < 0.5  # same picture, another low-pass


def test_finetune_test_geometry_resize_then_center_crop_bicubic():
    img = _jpeg(300, 200)
    official = EvalTransform(224, resize=int(224 / 0.875), interpolation="bicubic", draft=False)
    assert official.resize == 256
    out = official.crop_resize(img)
    # reference: shorter side to 256 (384 x 256), bicubic antialiased, center crop 224
    x = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)[None]
    ref = torch.nn.functional.interpolate(x, size=(256, 384), mode="bicubic", antialias=True)[0]
    assert torch.equal(out, ref[:, 16:240, 80:304])
    with pytest.raises(ValueError, match="interpolation must be one of"):
        EvalTransform(224, interpolation="nearest")


def test_finetune_training_crop_and_randaugment_interpolate_as_configured():
    """The official fine-tune (timm's create_transform, interpolation bicubic) resizes its random crop and
    warps RandAugment's geometric ops bicubically; ``interpolation`` sets both (bilinear stays the default)."""
    from mimscale.data.sources import build_source
    from mimscale.data.transforms import TrainTransform, rrc_params
    from mimscale.evaluate.augment import _apply
    from mimscale.evaluate.data import ClassificationData

    img = _jpeg(300, 200)
    x = torch.from_numpy(np.array(img.convert("RGB")))
    for mode in ("bilinear", "bicubic"):
        tf = TrainTransform(64, scale=(0.3, 1.0), hflip=False, draft=False, interpolation=mode)
        top, left, h, w = rrc_params(200, 300, tf.scale, tf.ratio, np.random.default_rng(5))
        ref = torch.nn.functional.interpolate(x[top:top + h, left:left + w].permute(2, 0, 1)[None], size=(64, 64),
                                              mode=mode, antialias=True)[0]
        assert torch.equal(tf.crop_resize(img, np.random.default_rng(5)), ref), mode
    with pytest.raises(ValueError, match="interpolation must be one of"):
        TrainTransform(64, interpolation="nearest")

    smooth = torch.linspace(0, 1, 32).repeat(3, 32, 1)
    bilinear = _apply("Rotate", smooth, 9, np.random.default_rng(0))
    bicubic = _apply("Rotate", smooth, 9, np.random.default_rng(0), "bicubic")
    assert 0 < float((bilinear - bicubic).abs().max()) < 0.1 and 0 <= float(bicubic.min()) <= float(bicubic.max()) <= 1

    src = build_source("shapes:size=32,pool=8,seed=0")
    data = ClassificationData(src, 32, train=True, crop_scale=(0.5, 1.0), interpolation="bicubic")
    assert data.train_tf.interpolation == "bicubic"
    assert not torch.equal(data[0][0], ClassificationData(src, 32, train=True, crop_scale=(0.5, 1.0))[0][0])
