"""The synthetic-results helpers live in synth_results.py beside this file; pytest puts this folder on
sys.path (``pythonpath`` in pyproject.toml). Fail at once if that name resolved to anything else."""

from pathlib import Path

import synth_results

assert Path(synth_results.__file__).resolve().parent == Path(__file__).resolve().parent, (
    f"'synth_results' was imported from {synth_results.__file__}, not from tests/analysis")
