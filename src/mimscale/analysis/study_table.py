"""``mimscale study results``: a study's results table (one row per run) and its long-format curve table.

The columns come from :mod:`mimscale.analysis.results` (the one definition of the results table that
the analysis and report also read); this module restricts them to the study's runs, adds the axis
values and the runner's status, and writes both tables as CSV (``results.csv``, ``curves.csv``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mimscale.rundir import atomic_write_text, run_id_of
from mimscale.study import store
from mimscale.study.spec import Study

from .results import CURVE_COLUMNS, curves_table, results_table


def _axis_value(v):
    # Lists and dicts (e.g. an axis over model.kwargs) go into one CSV cell as text.
    return str(v) if isinstance(v, (list, dict)) else v


def study_results(study: Study, study_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, curves): every run of the study in grid order, pending ones included with their status.
    ``run`` is the run directory's name (readable: ``vit-cpu-m_f0.1_it2000-<id>``, or the id alone in a study
    started before names were readable; a pending run gets the name it will have), ``run_id`` the id."""
    study_dir = Path(study_dir)
    table = results_table(study_dir)
    by_id = {run_id_of(str(r["run"])): r for r in table.to_dict("records")} if not table.empty else {}
    rows = []
    for run in study.runs:
        row = dict(by_id.get(run.id, {}))
        row["run"] = store.run_dir(study_dir, run.id, run.cfg).name
        row["run_id"] = run.id
        row["status"] = store.run_state(study_dir, run.id, run.evals)
        for k, v in run.axes.items():
            row[k] = _axis_value(v)
        rows.append(row)
    axes = study.axis_keys()
    runs = pd.DataFrame(rows)
    lead = ["run", "run_id", *axes, "status"]
    rest = [c for c in table.columns if c not in lead]  # the analysis' columns, even with no run done yet
    rest += [c for c in runs.columns if c not in lead and c not in rest]
    runs = runs.reindex(columns=lead + rest)
    curves = curves_table(study_dir)
    ids = {r.id for r in study.runs}
    if not curves.empty:
        curves = curves[curves["run"].map(run_id_of).isin(ids)].reset_index(drop=True)
    return runs, curves.reindex(columns=list(CURVE_COLUMNS))


def curves_path_for(out: Path) -> Path:
    """results.csv -> curves.csv beside it; anything else -> <stem>_curves.csv."""
    out = Path(out)
    if out.name == "results.csv":
        return out.with_name("curves.csv")
    return out.with_name(f"{out.stem}_curves.csv")


def write_results(study: Study, study_dir: Path, out: Path | None = None,
                  curves_out: Path | None = None) -> tuple[Path, Path, pd.DataFrame]:
    out = Path(out) if out else Path(study_dir) / "results.csv"
    curves_out = Path(curves_out) if curves_out else curves_path_for(out)
    runs, curves = study_results(study, study_dir)
    atomic_write_text(out, runs.to_csv(index=False))
    atomic_write_text(curves_out, curves.to_csv(index=False))
    return out, curves_out, runs
