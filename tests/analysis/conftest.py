"""The synthetic-results helpers live in synth_results.py and paper_grid.py beside this file; pytest puts
this folder on sys.path (``pythonpath`` in pyproject.toml). Fail at once if a name resolved to anything else."""

from pathlib import Path

import paper_grid
import synth_results

for _mod in (synth_results, paper_grid):
    assert Path(_mod.__file__).resolve().parent == Path(__file__).resolve().parent, (
        f"'{_mod.__name__}' was imported from {_mod.__file__}, not from tests/analysis")
