"""Fixtures for the report tests: one synthetic study and its report, built once per test session."""

import sys
from pathlib import Path

import pytest

_SYNTH = str(Path(__file__).resolve().parents[1] / "analysis")
if _SYNTH not in sys.path:
    sys.path.insert(0, _SYNTH)

from synth_results import make_study_dir  # noqa: E402  (needs the path above)

from mimscale.report import build_report  # noqa: E402

# Few resamples: the report's content, not the CIs' precision, is under test here.
FAST = {"n_boot": 200, "fit_boot": 20}


@pytest.fixture(scope="session")
def study_report(tmp_path_factory):
    """(study_dir, report.html path) of a synthetic study with one planted overfitting curve."""
    study = make_study_dir(tmp_path_factory.mktemp("study") / "study")
    return study, build_report(study, study / "report", **FAST)
