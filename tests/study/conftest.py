"""study_helpers (beside this file) is importable in the test processes because pytest puts this folder on
sys.path (``pythonpath`` in pyproject.toml); ``helper_env`` makes it importable in the processes tests start."""

import os
from pathlib import Path

import pytest
import study_helpers

HERE = str(Path(__file__).resolve().parent)
assert str(Path(study_helpers.__file__).resolve().parent) == HERE, (
    f"'study_helpers' was imported from {study_helpers.__file__}, not from tests/study")


@pytest.fixture
def helper_env(monkeypatch):
    """Environment in which spawned workers, submitit jobs and CLI subprocesses can import study_helpers."""
    path = os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return monkeypatch
