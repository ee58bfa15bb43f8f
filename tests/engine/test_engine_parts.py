"""The engine's pieces on their own: checkpoint layouts, parameter groups, the step's non-finite policy, the
guard, and fine-tuning under the same skip-count-stop policy as pre-training."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from eval_runs import ConstantLR, TinyData

from mimscale.engine.checkpoint import Fixed, Layout
from mimscale.engine.guard import Guard
from mimscale.engine.params import param_groups
from mimscale.engine.step import StepResult, optimizer_step
from mimscale.errors import CheckpointError, TrainingError
from mimscale.evaluate import engine as tuning_engine
from mimscale.train.setup import CHECKPOINT


def test_the_pretraining_layout_writes_checks_and_restores_its_parts(tmp_path):
    model, saved_model = nn.Linear(2, 2), nn.Linear(2, 2)
    counters = {"step": 3, "skipped_steps": 0, "train_time_s": 1.0, "images_done": 8}
    part = SimpleNamespace(state_dict=lambda: counters, load_state_dict=lambda s: loaded.update(s))
    loaded = {}
    objects = {"model": model, "optimizer": Fixed({"o": 1}), "scaler": None, "inputs": Fixed({"i": 2}),
               "rng": Fixed([{}]), "config": Fixed({"c": 3}), "counters": part, "guard": Guard("h", 1)}
    saved = CHECKPOINT.state(objects)
    assert saved["step"] == 3 and saved["scaler"] is None and "counters" not in saved  # counters at the top level
    assert CHECKPOINT.check(saved, tmp_path / "x.pt") is saved
    with pytest.raises(CheckpointError, match="is not a pre-training checkpoint .it lacks 'step'"):
        CHECKPOINT.check({k: v for k, v in saved.items() if k != "step"}, tmp_path / "x.pt")
    CHECKPOINT.restore(saved, {**objects, "model": saved_model})
    assert torch.equal(saved_model.weight, model.weight) and loaded["step"] == 3
    assert CHECKPOINT.describe().splitlines()[0] == "model"


def test_a_layout_says_which_parts_are_optional_and_flat():
    layout = Layout("toy", parts=("model", "scaler", "counters"), flat={"counters": ("step", "seen")},
                    optional=("scaler",), required_flat=("step",))
    assert layout.required == ("model", "step")
    assert layout.describe() == "model\nscaler (optional)\ncounters (top-level keys: step, seen)"


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 3)
        self.norm = nn.LayerNorm(3)
        self.token = nn.Parameter(torch.zeros(1, 3))


def test_the_no_decay_rule_and_the_two_group_layouts():
    model = _Toy()
    pre = param_groups(model, 0.05, exempt={"token"}, names=True)
    assert [(g["weight_decay"], g["names"]) for g in pre] == [
        (0.05, ["a.weight", "b.weight"]), (0.0, ["token", "a.bias", "b.bias", "norm.weight", "norm.bias"])]
    layers = {"a.weight": 0, "a.bias": 0, "b.weight": 1, "b.bias": 1, "norm.weight": 1, "norm.bias": 1, "token": 0}
    tuned = param_groups(model, 0.05, exempt={"token"}, layer_of=layers.__getitem__, layer_scale=lambda i: 0.5 ** (1 - i),
                         names=True)
    assert [(g["layer_id"], g["weight_decay"], g["lr_scale"], g["names"]) for g in tuned] == [
        (0, 0.0, 0.5, ["token", "a.bias"]), (0, 0.05, 0.5, ["a.weight"]),
        (1, 0.0, 1.0, ["b.bias", "norm.weight", "norm.bias"]), (1, 0.05, 1.0, ["b.weight"])]


def test_a_non_finite_step_is_skipped_and_leaves_the_weights():
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.ones(4, 2)

    def micro():
        loss = model(x).sum() * float("nan")
        return loss, loss.detach()

    result = optimizer_step(model, opt, [micro], torch.zeros(()), 1, list(model.parameters()), 1.0)
    assert not result.finite and not result.loss_finite
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_the_guard_stops_after_the_consecutive_limit_with_one_message_format():
    guard = Guard("lower the LR", max_nonfinite=2, divergence_factor=4.0)
    bad, good = StepResult(float("nan"), float("nan"), False, False), StepResult(1.0, 1.0, True, True)
    guard.after_step(1, bad)
    guard.after_step(2, good)  # a finite step resets the count
    guard.after_step(3, bad)
    assert not guard.clean
    with pytest.raises(TrainingError, match=r"^2 consecutive non-finite losses at step 4; lower the LR \(the last"):
        guard.after_step(4, bad)
    with pytest.raises(TrainingError, match=r"^the training loss diverged .* at step 6; lower the LR \(no checkpoint"):
        guard.after_step(5, good)
        guard.after_step(6, StepResult(100.0, 1.0, True, True))
    guard.initial_weight_norm = 1e-6
    with pytest.raises(TrainingError, match=r"^the weights exploded .* at step 7; lower the LR \(this state"):
        guard.check_weights(7, nn.Linear(2, 2))


def _tuner(poisoned: set[int], calls: list):
    cfg = SimpleNamespace(batch_size=8, accum_steps=1, seed=3, num_workers=0, precision="fp32", clip_grad=1.0,
                          eval_every=1)
    torch.manual_seed(0)
    model = nn.Linear(4, 3)

    def loss_fn(out, y):
        calls.append(1)
        return F.cross_entropy(out, y) * (float("nan") if len(calls) in poisoned else 1.0)

    tuner = tuning_engine.Tuner(model, TinyData(16), torch.optim.SGD(model.parameters(), lr=0.1), ConstantLR(), cfg,
                                torch.device("cpu"), loss_fn, lambda m: {"top1": float(m.weight.detach().sum())}, "top1",
                                None, {})
    return tuner, model


def test_finetuning_skips_a_non_finite_step_counts_it_and_stops_after_the_limit():
    tuner, model = _tuner({2}, calls := [])
    history = tuner.run(2).history  # 2 steps an epoch; the second step's loss is NaN
    assert [h["skipped_steps"] for h in history] == [1, 1]
    clean, _ = _tuner(set(), [])
    assert clean.run(2).history[0]["train_loss"] != history[0]["train_loss"]  # the NaN step's loss is left out
    tuner, _ = _tuner(set(range(1, 100)), [])
    with pytest.raises(TrainingError, match=f"{tuning_engine.MAX_NONFINITE} consecutive non-finite losses at step"):
        tuner.run(20)
