"""A damaged fine-tuning state (a full disk, a flipped bit, garbage) is passed over with a line: the
fine-tuning starts over and ends where an uninterrupted one does, instead of failing or trusting it."""


import pytest
from eval_runs import tiny_tuner

_tuner = tiny_tuner


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
