"""Datasets and data series: which runs lie on one data axis, and the sizes models share.

A run's data is (dataset, data_size). The held-out loss of every run is measured on one dataset's
validation set, the *primary* dataset: `--primary-dataset NAME`, by default the dataset with the most
runs (ties by name). Another dataset is its own series, not a point further along the primary's data
axis (its losses on the primary's validation set mix a change of distribution into a change of size),
unless the user says it is the same distribution (`--same-distribution`): then every run is on one axis.

Comparisons across models use the data sizes they share (`shared_sizes`), never gains over different
ranges.
"""

from __future__ import annotations

import pandas as pd

from .results import ResultsError


def choose_primary(runs: pd.DataFrame, primary: str | None = None) -> tuple[str, str]:
    """(primary dataset, why it is the primary) for a runs table with a `dataset` column."""
    counts = runs["dataset"].value_counts()
    names = sorted(counts.index, key=lambda n: (-int(counts[n]), str(n)))
    if primary is not None:
        if primary not in counts.index:
            raise ResultsError(f"--primary-dataset {primary!r} is not in the results (datasets: "
                               f"{', '.join(map(str, names))})")
        return primary, "--primary-dataset"
    if len(names) == 1:
        return names[0], "the only dataset"
    tie = int(counts[names[0]]) == int(counts[names[1]])
    return names[0], "the dataset with the most runs" + (" (a tie, broken by name)" if tie else "")


def assign_series(runs: pd.DataFrame, primary: str | None = None,
                  same_distribution: bool = False) -> tuple[pd.DataFrame, dict]:
    """Add a `series` column (the data axis a run lies on) and describe the datasets.

    Returns (runs, info) with info = {primary, primary_basis, same_distribution, datasets: [{name,
    n_runs, sizes, series, role}]}."""
    name, basis = choose_primary(runs, primary)
    runs = runs.copy()
    runs["series"] = name if same_distribution else runs["dataset"]
    datasets = []
    counts = runs["dataset"].value_counts()
    for ds in sorted(counts.index, key=lambda n: (n != name, -int(counts[n]), str(n))):
        if ds == name:
            role = "primary: the held-out loss is measured on its validation set"
        elif same_distribution:
            role = f"same distribution as {name} (--same-distribution): on its data axis"
        else:
            role = f"its own series: not on {name}'s data axis (--same-distribution to put it there)"
        sizes = sorted(float(v) for v in runs.loc[runs["dataset"] == ds, "data_size"].unique())
        datasets.append({"name": ds, "n_runs": int(counts[ds]), "sizes": sizes,
                         "series": name if same_distribution else ds, "role": role})
    return runs, {"primary": name, "primary_basis": basis, "same_distribution": bool(same_distribution),
                  "datasets": datasets}


def series_order(runs: pd.DataFrame, primary: str) -> list[str]:
    """The primary series first, then the others by name."""
    return sorted(runs["series"].unique(), key=lambda s: (s != primary, str(s)))


def shared_sizes(settings: pd.DataFrame) -> tuple[list[float], list[str], list[str]]:
    """Settings of one series and length -> (sizes every compared model has, compared models, models
    left out because they have fewer than 2 sizes there)."""
    by_model = settings.groupby("model")["data_size"].agg(lambda s: set(s.unique()))
    compared = [m for m, s in by_model.items() if len(s) >= 2]
    left_out = [m for m, s in by_model.items() if len(s) < 2]
    if not compared:
        return [], [], left_out
    common = set.intersection(*(by_model[m] for m in compared))
    return sorted(float(v) for v in common), compared, left_out


def ensure_series(runs: pd.DataFrame) -> pd.DataFrame:
    """A runs table with a `series` column (each dataset its own series when none was assigned)."""
    if "series" in runs.columns:
        return runs
    runs = runs.copy()
    runs["series"] = runs["dataset"] if "dataset" in runs.columns else "unnamed"
    return runs
