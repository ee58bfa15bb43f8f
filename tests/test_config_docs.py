"""Each config key is declared once, with a check and a doc; docs/CONFIG.md is written from those declarations."""

from pathlib import Path

import pytest

from mimscale import config as C
from mimscale.config_docs import markdown
from mimscale.config_keys import Check
from mimscale.errors import ConfigError
from mimscale.evaluate import config as E

DOC = Path(__file__).resolve().parents[1] / "docs" / "CONFIG.md"


def test_committed_config_md_is_current():
    assert DOC.read_text() == markdown(), "docs/CONFIG.md is stale: python -m mimscale.config_docs > docs/CONFIG.md"


@pytest.mark.parametrize("keys", [C.KEYS, E.KEYS], ids=["pretrain", "evaluate"])
def test_every_key_has_a_check_and_a_doc(keys):
    for name, decl in keys.items():
        assert isinstance(decl.check, Check) and decl.check.what and decl.doc.strip(), name
        decl.check(name, decl.default)  # every default passes its own check


def test_shared_key_is_one_declaration():
    pre, ev = C.KEYS["train.fp16_init_scale"], E.KEYS["fp16_init_scale"]
    assert (pre.default, pre.doc, pre.check, pre.since) == (ev.default, ev.doc, ev.check, ev.since)
    assert pre.check is C.FP16_INIT_SCALE.check


def test_derived_tables():
    assert C.ADDED_KEYS == {"data.jpeg_draft": (3, True), "train.decay_position_bias": (3, False),
                            "train.decay_fraction": (4, 0.2), "train.decay_shape": (4, "linear"),
                            "train.fp16_init_scale": (5, 65536.0), "train.warmup": (6, ""),
                            "train.eval_interval": (6, "")}
    assert set(C.NON_IDENTITY_KEYS) == {
        "device", "threads", "out", "name", "run_dir", "data.num_workers", "train.log_every", "train.keep_last",
        "train.tensorboard", "train.compile", "train.ckpt_every", "train.divergence_factor", "train.share_with",
        "train.branch_from", "track"}
    # lr_floor_rule and drop_last changed a default: their neutral value is the former behaviour, not the default.
    assert E.ADDED_KEYS == {"test_crop": 1.0, "interpolation": "bilinear", "fp16_init_scale": 65536.0,
                            "lr_floor_rule": "scaled", "drop_last": False, "jpeg_draft": True}
    assert (E.KEYS["lr_floor_rule"].default, E.KEYS["drop_last"].default) == ("absolute", True)
    assert {t: len(k) for t, k in E.TASK_KEYS.items()} == {"finetune": 39, "linear": 24, "knn": 19, "segment": 30}
    assert not {"device", "threads", "num_workers", "accum_steps", "name"} & {k for ks in E.TASK_KEYS.values()
                                                                              for k in ks}


@pytest.mark.parametrize("override, message", [
    ("train.schedule=linear", "train.schedule must be one of cosine, step, wsd, got 'linear'"),
    ("train.fp16_init_scale=0", "train.fp16_init_scale must be positive (at most 2^64), got 0.0"),
    ("train.branch_from=abc", "train.branch_from must be RUN_DIR@STEP, got 'abc'"),
    ("train.debug_nan_steps=[-1]", "train.debug_nan_steps must be a list of steps >= 0"),
    ("model.name=''", "model.name must be a non-empty text"),
])
def test_pretrain_checks_from_declarations(override, message):
    with pytest.raises(ConfigError) as e:
        C.load_config(None, ["train.iters=10", override])
    assert message in str(e.value)


@pytest.mark.parametrize("override, message", [
    ("fp16_init_scale=-1", "fp16_init_scale must be positive (at most 2^64), got -1.0"),
    ("knn_k=0", "knn_k must be positive, got 0"),
    ("crop_scale=[0.5,0.2]", "crop_scale must be [lo, hi] with 0 < lo <= hi <= 1, got [0.5, 0.2]"),
    ("linear_lrs=[]", "linear_lrs must be a non-empty list of positive learning rates"),
    ("device=tpu", "device must be auto, cpu, cuda or cuda:N"),
])
def test_eval_checks_from_declarations(override, message):
    with pytest.raises(ConfigError) as e:
        E.load_eval_config(None, [override])
    assert message in str(e.value)
