"""Studies: a grid of pre-training runs (model x data fraction x length x ...) with evaluations.

``study_main(argv)`` is ``mimscale study plan | run | status | results``. In Python::

    study = load_study("studies/cpu-small.yaml")     # parse + expand (StudyError on bad input)
    init_study_dir(study, "runs/cpu-small")                 # study.yaml; refuses a different study
    run_local(study, "runs/cpu-small", workers=2)           # resumable; rerun to continue
    status_rows(study, "runs/cpu-small")    # results.csv: mimscale.analysis.study_table.write_results

Names are imported on first use, so that ``mimscale study --help`` loads nothing of the study code.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "study_main": "cli", "load_study": "spec", "parse_study": "spec", "Study": "spec", "StudyRun": "spec",
    "StudyError": "errors", "init_study_dir": "store", "load_study_dir": "store", "run_state": "store",
    "try_claim": "store", "RunState": "store", "run_local": "local", "RunReport": "local",
    "pretrain_and_evaluate": "worker", "status_rows": "status",
}
__all__ = list(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        module = "mimscale.errors" if _NAMES[name] == "errors" else f"mimscale.study.{_NAMES[name]}"
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'mimscale.study' has no attribute {name!r}")
