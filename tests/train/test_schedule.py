import math

import pytest
from omegaconf import OmegaConf

from mimscale.config import TrainConfig
from mimscale.engine.schedule import LRSchedule, lr_at, scaled_lr
from mimscale.train.schedule import budgeted_eval_points, eval_steps, total_steps


def test_linear_scaling_rule():
    assert scaled_lr(1e-4, 2048) == pytest.approx(4e-4)  # the recipe: 4e-4 at batch 2048
    assert scaled_lr(1.25e-3, 2048) == pytest.approx(5e-3)


def test_cosine_warmup_start_peak_end():
    kw = dict(total=1000, peak=1e-3, warmup_steps=100, warmup_lr=1e-6, min_lr=1e-5)
    assert lr_at(0, **kw) == pytest.approx(1e-6)
    assert lr_at(50, **kw) == pytest.approx(1e-6 + (1e-3 - 1e-6) * 0.5)
    assert lr_at(100, **kw) == pytest.approx(1e-3)
    assert lr_at(550, **kw) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)
    assert lr_at(1000, **kw) == pytest.approx(1e-5)
    values = [lr_at(s, **kw) for s in range(100, 1001)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_step_decay_at_seven_eighths():
    kw = dict(total=800, peak=4e-4, warmup_steps=40, warmup_lr=2e-6, min_lr=0.0, kind="step")
    assert lr_at(699, **kw) == pytest.approx(4e-4)
    assert lr_at(700, **kw) == pytest.approx(4e-5)
    assert lr_at(799, **kw) == pytest.approx(4e-5)


def test_pure_function_of_step():
    kw = dict(total=500, peak=1.0, warmup_steps=10, warmup_lr=0.0, min_lr=0.0)
    forward = [lr_at(s, **kw) for s in range(500)]
    backward = [lr_at(s, **kw) for s in reversed(range(500))][::-1]  # no state carried between calls
    assert forward == backward
    assert forward[3] == pytest.approx(0.3)  # linear warmup from 0 to the peak at step 10
    assert forward[10] == pytest.approx(1.0)
    assert forward[255] == pytest.approx(0.5)  # cosine halfway through the 490 post-warmup steps


def test_schedule_from_config_scales_lrs_and_resolves_warmup():
    t = OmegaConf.structured(TrainConfig(iters=800, batch_size=2048, base_lr=1e-4, warmup_lr=5e-7, min_lr=5e-6,
                                         warmup_iters=-1, warmup_fraction=0.0125, schedule="step"))
    sched = LRSchedule.from_config(t, 800)
    assert sched.peak == pytest.approx(4e-4) and sched.warmup_steps == 10
    assert sched.warmup_lr == pytest.approx(2e-6) and sched(0) == pytest.approx(2e-6)
    assert sched(699) == pytest.approx(4e-4) and sched(700) == pytest.approx(4e-5)
    assert LRSchedule.from_config(OmegaConf.merge(t, {"warmup_iters": 40}), 800).warmup_steps == 40


def test_length_units_convert_in_one_place():
    assert total_steps(125_000, 0, 0, 2048, 1_281_167) == 125_000
    assert total_steps(0, 800, 0, 2048, 1_281_167) == math.ceil(800 * 1_281_167 / 2048)
    assert total_steps(0, 0, 10_000, 64, 1000) == 157
    with pytest.raises(ValueError):
        total_steps(0, 0, 0, 64, 1000)


def test_eval_steps_evenly_spaced_and_final():
    assert eval_steps(100, 0, 10) == set(range(10, 101, 10))
    assert eval_steps(95, 30, 0) == {30, 60, 90, 95}


def test_eval_budget_caps_points_of_short_runs_only():
    # demo 500-iteration run: 500 x 64 training images; 1,500 eval images cost 0.4 x 1,500 = 600 training
    # images each time, so 5% of 32,000 affords 2.67 evaluations: step 0 + the final one.
    assert budgeted_eval_points(10, 500, 64, 1500, 0.05) == 1
    assert budgeted_eval_points(10, 2000, 64, 1500, 0.05) == 9  # 10.67 affordable, step 0 included
    assert budgeted_eval_points(10, 4000, 64, 1500, 0.05) == 10  # long runs: not capped
    assert budgeted_eval_points(10, 500, 64, 1500, 0.0) == 10  # 0 disables the cap
    assert budgeted_eval_points(10, 10, 8, 1500, 0.05) == 1  # never fewer than the final evaluation
    for steps in (1000, 2000, 5000, 10_000):  # within budget, and one more point would not be
        n = budgeted_eval_points(25, steps, 64, 1500, 0.05)
        assert n == 25 or (n + 1) * 0.4 * 1500 <= 0.05 * steps * 64 < (n + 2) * 0.4 * 1500
