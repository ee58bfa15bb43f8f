"""Makes study_helpers (beside this file) importable in any import mode, and in the processes tests start."""

import os
import sys
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture
def helper_env(monkeypatch):
    """Environment in which spawned workers, submitit jobs and CLI subprocesses can import study_helpers."""
    path = os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return monkeypatch
