"""Studies: a grid of pre-training runs (model x data fraction x length x ...) with evaluations.

``study_main(argv)`` is ``mimscale study plan | run | status | results``. In Python::

    study = load_study("configs/studies/cpu-small.yaml")     # parse + expand (StudyError on bad input)
    init_study_dir(study, "runs/cpu-small")                 # study.yaml; refuses a different study
    run_local(study, "runs/cpu-small", workers=2)           # resumable; rerun to continue
    status_rows(study, "runs/cpu-small")    # results.csv: mimscale.analysis.study_table.write_results
"""

from mimscale.errors import StudyError
from mimscale.study.cli import study_main
from mimscale.study.local import RunReport, run_local
from mimscale.study.spec import Study, StudyRun, load_study, parse_study
from mimscale.study.status import status_rows
from mimscale.study.store import init_study_dir, load_study_dir, run_state, try_claim
from mimscale.study.worker import pretrain_and_evaluate

__all__ = ["study_main", "load_study", "parse_study", "Study", "StudyRun", "StudyError", "init_study_dir",
           "load_study_dir", "run_state", "try_claim", "run_local", "RunReport", "pretrain_and_evaluate",
           "status_rows"]

