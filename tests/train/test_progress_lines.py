"""Without a terminal, pre-training writes a progress line every minute or every tenth of the run, whichever
comes first (``train/progress.py``); the clock is a fake one, so nothing here depends on speed."""

from mimscale.train import progress as P


def _lines(capsys) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("[pretrain]")]


def test_a_long_run_writes_a_line_every_minute(monkeypatch, capsys):
    clock = [1000.0]
    monkeypatch.setattr(P.time, "time", lambda: clock[0])
    bar = P.Progress(total=125_000)  # a tenth is 12,500 steps
    assert bar.bar is None  # pytest's stderr is no terminal
    for step in range(1, 601):  # 2 s per step: 20 minutes, 600 steps, far from a tenth
        clock[0] += 2.0
        bar.update(step, 0.5, 64.0)
    lines = _lines(capsys)
    assert len(lines) == 20
    assert lines[0].startswith("[pretrain] step 30/125000 loss 0.5000 64 img/s eta ")
    assert lines[0].endswith(f" eta {(125_000 - 30) * 2}s")


def test_a_short_run_writes_a_line_every_tenth(monkeypatch, capsys):
    clock = [0.0]
    monkeypatch.setattr(P.time, "time", lambda: clock[0])
    bar = P.Progress(total=100)
    for step in range(1, 101):
        clock[0] += 0.1
        bar.update(step, 0.5, 64.0)
    assert [int(ln.split()[2].split("/")[0]) for ln in _lines(capsys)] == list(range(10, 101, 10))
