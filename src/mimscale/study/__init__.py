"""Studies: a grid of pre-training runs (model x data fraction x length x ...) with evaluations.

``study_main(argv)`` is ``mimscale study plan | run | status | results``. In Python::

    study = load_study("studies/cpu-small.yaml")     # parse + expand (StudyError on bad input)
    init_study_dir(study, "runs/cpu-small")                 # study.yaml; refuses a different study
    run_local(study, "runs/cpu-small", workers=2)           # resumable; rerun to continue
    status_rows(study, "runs/cpu-small")    # results.csv: mimscale.analysis.study_table.write_results

Names are imported on first use, so that ``mimscale study --help`` loads nothing of the study code.
"""

from __future__ import annotations

from mimscale.lazy import lazy_exports

_NAMES = {
    "study_main": "cli", "load_study": "spec", "parse_study": "spec", "Study": "spec", "StudyRun": "spec",
    "StudyError": "mimscale.errors", "init_study_dir": "store", "load_study_dir": "store", "run_state": "store",
    "try_claim": "store", "RunState": "store", "run_local": "local", "RunReport": "local",
    "pretrain_and_evaluate": "worker", "status_rows": "status",
}
__all__ = list(_NAMES)

__getattr__ = lazy_exports(__name__, _NAMES)
