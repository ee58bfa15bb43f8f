"""A damaged fine-tuning state (a full disk, a flipped bit, garbage) is passed over with a line: the
fine-tuning starts over and ends where an uninterrupted one does, instead of failing or trusting it."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from eval_runs import ConstantLR, TinyData

from mimscale.evaluate import engine

CFG = SimpleNamespace(batch_size=8, accum_steps=1, seed=3, num_workers=0, precision="fp32", clip_grad=0.0,
                      eval_every=1)


def _tuner(state_path):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    data = TinyData(24)

    def evaluate(m):
        with torch.no_grad():
            return {"top1": float((m(data.x).argmax(1) == data.y).float().mean()), "w": float(m.weight.sum())}

    return engine.Tuner(model, data, torch.optim.SGD(model.parameters(), lr=0.1), ConstantLR(), CFG,
                        torch.device("cpu"), F.cross_entropy, evaluate, "top1", state_path, {"id": 1})


@pytest.mark.parametrize("content", [b"", b"garbage", b"step: 3\n", b"PK\x03\x04" + b"\x00" * 64])
def test_a_damaged_fine_tuning_state_is_passed_over(tmp_path, capsys, content):
    reference = _tuner(None).run(2).history
    state = tmp_path / "state.pt"
    state.write_bytes(content)
    capsys.readouterr()
    tuner = _tuner(state)
    out = capsys.readouterr()
    assert tuner.tuning.step == 0
    assert "passed over a damaged fine-tuning state" in out.out + out.err
    assert tuner.run(2).history == reference
