"""Real signal with fixed seeds: SimMIM pre-training beats the same encoder at random init on the frozen-
feature probes and in fine-tuning, and a short segmentation run beats the majority-class baseline
(built-in shapes)."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mimscale.evaluate import load_eval_config, run

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "mimscale" / "configs" / "finetune"

# The default downstream data: the built-in shapes probe pool (2,000 labelled images) and test pool (1,000).
DATA = dict(batch_size=250)

# Pre-trained minus random-init top-1 that each test asserts: about half the smallest gap measured over
# pre-training seeds 0-2 and CPU kernels (ATen's default / AVX2 / AVX-512, and ATen + oneDNN capped at AVX2),
# one thread as here (benchmarks/signal_spread.py; BENCHMARKS.md, "CI"). Float results differ between CPU
# models, and another CPU moves the pre-trained encoder about as much as another seed does: the AVX2
# machine fine-tuned seed 0 to 0.315 vs 0.276 (reproduced with ATen and oneDNN capped at AVX2) where this CPU
# gives 0.351. Smallest gaps: linear +0.047, kNN +0.073; fine-tuning, the mean top-1 over the 20 epochs
# +0.030, while its best / final top-1 came within +0.001 / +0.004 of random init (seed 1): fine-tuning from
# the pre-trained encoder learns faster in every cell measured, but at this budget does not always end higher.
MARGIN = {"linear": 0.02, "knn": 0.035, "finetune_mean": 0.015}


@pytest.mark.parametrize("task", ["linear", "knn"])
def test_pretrained_beats_random_init(pretrained_run, task):
    pre = run(pretrained_run, dict(task=task, name=f"{task}-pre", **DATA))
    rand = run(pretrained_run, dict(task=task, name=f"{task}-rand", init="random", **DATA))
    print(f"{task}: pretrained {pre['metrics']['top1']:.3f} random {rand['metrics']['top1']:.3f}")
    assert pre["init"] == "pretrained" and pre["checkpoint"] and rand["checkpoint"] is None
    assert rand["metrics"]["top1"] < 0.16  # chance is 0.10
    assert pre["metrics"]["top1"] > rand["metrics"]["top1"] + MARGIN[task]
    assert pre["data"]["num_train"] == 2000 and pre["data"]["num_test"] == 1000


def test_finetuning_pretrained_beats_random_init(pretrained_run):
    # configs/finetune/finetune-cpu.yaml as shipped (20 epochs on 2,000 images, test top-1 after every epoch).
    # The statistic is the mean top-1 over the epochs (the area under the learning curve): see MARGIN.
    cfg = load_eval_config(CONFIGS / "finetune-cpu.yaml")
    pre = run(pretrained_run, OmegaConf.merge(cfg, {"name": "finetune-pre"}))
    rand = run(pretrained_run, OmegaConf.merge(cfg, {"name": "finetune-rand", "init": "random"}))
    curve = {k: [h["top1"] for h in r["history"]] for k, r in (("pre", pre), ("rand", rand))}
    mean = {k: sum(v) / len(v) for k, v in curve.items()}
    print(f"finetune: pretrained {pre['metrics']['top1']:.3f} random {rand['metrics']['top1']:.3f}; mean over "
          f"epochs {mean['pre']:.3f} vs {mean['rand']:.3f}")
    assert len(curve["pre"]) == len(curve["rand"]) == 20
    assert mean["pre"] > mean["rand"] + MARGIN["finetune_mean"]
    assert pre["metrics"]["final_top1"] > 0.2  # well above chance (0.10): smallest measured 0.270


def test_segmentation_beats_majority_baseline(pretrained_run):
    # background / shape / occluder (configs/finetune/segment-cpu.yaml): the 12-class masks need the shape's
    # class at every pixel, which a 38k-parameter encoder cannot give (its linear probe is ~0.2).
    merge = {**{v: 1 for v in range(1, 11)}, 11: 2}
    res = run(pretrained_run, dict(task="segment", epochs=3, warmup_epochs=0.2, base_lr=1e-2, min_lr=1e-5,
                                   seg_width=32, seg_label_map=merge, batch_size=32, drop_path=0.0,
                                   train_source="shapes:size=32,pool=800,seed=0,split=probe",
                                   test_source="shapes:size=32,pool=300,seed=0,split=test"))
    m = {**res["details"], **res["metrics"]}
    print(f"segment: mIoU {m['miou']:.3f} final {m['final_miou']:.3f} baseline {m['baseline_miou']:.3f}")
    assert res["headline"] == "miou" and m["num_classes"] == 3 and len(res["history"]) == 3
    assert m["final_miou"] > m["baseline_miou"] + 0.08
    assert m["final_pixel_acc"] > m["baseline_pixel_acc"] + 0.02
