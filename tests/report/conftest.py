"""Fixtures for the report tests: one synthetic study and its report, built once per test session."""

import pytest
from synth_results import make_study_dir  # tests/analysis/synth_results.py (``pythonpath`` in pyproject.toml)

from mimscale.report import build_report

# Few resamples: the report's content, not the CIs' precision, is under test here.
FAST = {"n_boot": 200, "fit_boot": 20}


@pytest.fixture(scope="session")
def study_report(tmp_path_factory):
    """(study_dir, report.html path) of a synthetic study with one planted overfitting curve."""
    study = make_study_dir(tmp_path_factory.mktemp("study") / "study")
    return study, build_report(study, study / "report", **FAST)
