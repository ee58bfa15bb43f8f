"""Shared by every test folder: ``skip_or_fail``, the one way a test says that this machine lacks what it needs.

Off CI it skips with the reason; under MIMSCALE_CI=1 (set by .ci/run) it fails with the same reason, so CI
cannot pass by skipping the Slurm, multi-process or TensorBoard checks.
"""

import os

import pytest


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("MIMSCALE_CI") == "1":
        pytest.fail(f"MIMSCALE_CI=1: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def skip_or_fail():
    """``skip_or_fail(reason)``: skip this test (fail it under MIMSCALE_CI=1) because of ``reason``."""
    return _skip_or_fail
