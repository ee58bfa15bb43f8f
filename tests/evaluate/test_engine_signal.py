"""The fine-tuning loop stopped by a signal at every possible step, in process: whichever step the signal
finds (an epoch's first, middle or last), the resumed run's history equals the uninterrupted one's exactly.
A signal at an epoch's last step once skipped that epoch's evaluation and merged its loss into the next."""

import signal
from types import SimpleNamespace

import pytest
import torch
from eval_runs import TINY_CFG, tiny_tuner

from mimscale.errors import Interrupted
from mimscale.evaluate import engine

CFG = TINY_CFG
EPOCHS, STEPS = 3, 3  # 24 images at batch 8
_tuner = tiny_tuner


@pytest.mark.parametrize("stop_at", range(1, EPOCHS * STEPS))  # after step 1 .. 8 (9 is the end)
def test_a_signal_at_any_step_resumes_to_the_uninterrupted_history(tmp_path, monkeypatch, stop_at):
    reference = _tuner(None).run(EPOCHS).history
    assert len(reference) == EPOCHS

    tuner = _tuner(tmp_path / "state.pt")
    monkeypatch.setattr(engine.dist, "agreed_signal",
                        lambda signum, device: signal.SIGTERM if tuner.tuning.step == stop_at else 0)
    with pytest.raises(Interrupted):
        tuner.run(EPOCHS)
    monkeypatch.undo()
    resumed = _tuner(tmp_path / "state.pt")
    assert resumed.tuning.step == stop_at
    assert resumed.run(EPOCHS).history == reference


FP16 = SimpleNamespace(**{**vars(CFG), "precision": "fp16", "fp16_init_scale": 2.0 ** 20})


@pytest.mark.parametrize("stop_at", [1, 3, 5])
def test_fp16_skips_overflowing_steps_counts_them_and_resumes_with_its_loss_scale(tmp_path, monkeypatch, stop_at):
    """fp16 (autocast and a grad scaler, as the official fine-tune): a first loss scale of 2^20 overflows the
    fp16 gradients, so the first steps are skipped (weights unchanged) while the scale backs off; the scale is
    saved with the state, so a run stopped at any step resumes to the same history, skipped steps included."""
    reference = _tuner(None, FP16)
    w0 = reference.model.weight.detach().clone()
    history = reference.run(EPOCHS).history
    skipped = [h["skipped_steps"] for h in history]
    assert 0 < skipped[0] and skipped[-1] < EPOCHS * STEPS, skipped  # some skipped, not all
    assert reference.scaler.get_scale() < 2.0 ** 20
    assert not torch.equal(reference.model.weight, w0)

    tuner = _tuner(tmp_path / "state.pt", FP16)
    monkeypatch.setattr(engine.dist, "agreed_signal",
                        lambda signum, device: signal.SIGTERM if tuner.tuning.step == stop_at else 0)
    with pytest.raises(Interrupted):
        tuner.run(EPOCHS)
    monkeypatch.setattr(engine.dist, "agreed_signal", lambda signum, device: 0)
    resumed = _tuner(tmp_path / "state.pt", FP16)
    assert resumed.tuning.step == stop_at and resumed.scaler.get_scale() == tuner.scaler.get_scale()
    assert resumed.run(EPOCHS).history == history
