"""Shared by every test folder.

- ``skip_or_fail``: the one way a test says that this machine lacks what it needs. Off CI it skips with the
  reason; under MIMSCALE_CI=1 (set by .ci/run) it fails with the same reason, so CI cannot pass by skipping
  the Slurm, multi-process or TensorBoard checks.
- The groups of tests that need something of the machine (a Slurm cluster, torchrun launchers, Chromium,
  TensorBoard, W&B and MLflow) get one line each at the end of a run: how many passed, skipped and failed, and their summed
  duration (the time each group adds to the suite, before ``-n 2`` spreads it over two workers).
"""

import os
from collections import defaultdict

import pytest

# group -> (marker, or path fragments of the test ids)
GROUPS = {
    "slurm": ("slurm", ()),
    "torchrun": ("multiprocess", ("tests/train/test_pretrain.py::test_ddp", "tests/evaluate/test_finetune_distributed.py")),
    "chromium": (None, ("tests/report/test_report_chromium.py",)),
    "tensorboard": (None, ("tests/train/test_tensorboard.py",)),
    "trackers": (None, ("tests/train/test_tracking.py",)),
}
_seen: dict[str, dict] = defaultdict(lambda: {"passed": 0, "skipped": 0, "failed": 0, "xfailed": 0, "s": 0.0})
_measured: list[str] = []


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("MIMSCALE_CI") == "1":
        pytest.fail(f"MIMSCALE_CI=1: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def skip_or_fail():
    """``skip_or_fail(reason)``: skip this test (fail it under MIMSCALE_CI=1) because of ``reason``."""
    return _skip_or_fail


def _groups(report) -> list[str]:
    return [g for g, (marker, paths) in GROUPS.items()
            if (marker and marker in report.keywords) or any(p in report.nodeid for p in paths)]


def pytest_runtest_logreport(report):
    """Tally each group's outcomes and durations (on the controller too when xdist runs the tests), and keep
    what tests measured (``record_property("measured", text)``) for the summary."""
    if report.when == "call":
        _measured.extend(v for k, v in report.user_properties if k == "measured")
    groups = _groups(report)
    if not groups:
        return
    for g in groups:
        _seen[g]["s"] += report.duration
    if report.when == "call" or (report.when == "setup" and not report.passed):
        outcome = ("xfailed" if hasattr(report, "wasxfail") and report.skipped
                   else "skipped" if report.skipped else "failed" if report.failed else "passed")
        for g in groups:
            _seen[g][outcome] += 1


def pytest_terminal_summary(terminalreporter):
    if _measured:
        terminalreporter.section("measured")
        for line in sorted(_measured):
            terminalreporter.write_line(line)
    if not _seen:
        return
    terminalreporter.section("mimscale test groups")
    for g in GROUPS:
        if g in _seen:
            c = _seen[g]
            xf = f", {c['xfailed']} xfailed" if c["xfailed"] else ""
            terminalreporter.write_line(f"{g}: {c['passed']} passed, {c['skipped']} skipped, {c['failed']} failed{xf} "
                                        f"in {c['s']:.1f} s (summed test durations)")
