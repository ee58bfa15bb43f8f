"""The results table: one row per pre-training run, from a study directory or a CSV.

This module only reads files (run directories, CSVs); it never imports model or training code, so
the study runner can call `results_table(study_dir)` to write `results.csv` and published grids can
be analysed from a plain CSV the same way.

Columns of the results table (CSV input must have the first five):

    model, params, data_size, iters, val_loss          required
    dataset, data_fraction, run, seed, status,         optional (a missing or empty dataset is
    global_batch,                                      "unnamed"; see datasets.py)
    epochs_equivalent, best_val_loss, best_val_step,
    train_probe_loss
    eval_<name>                                        any number of downstream metrics; higher is
                                                       better unless the name ends in "loss"
    eval_<name>_data                                   text, not a metric: the data evaluation <name>
                                                       trained and tested on (e.g. "folder:/x (train / val)")

Study directories map onto it as follows (`STUDY_DIR/runs/<run_id>/`):

    summary.json final_val_loss          -> val_loss
    summary.json final_train_probe_loss  -> train_probe_loss
    summary.json model, params, data_size, data_fraction, iters, global_batch, epochs_equivalent,
                 best_val_loss, best_val_step, images_per_s, train_time_s, skipped_steps,
                 skipped_files, status                  -> same names
    config.yaml  model.name, data.fraction, train.iters, train.batch_size, seed -> fallbacks / seed
    config.yaml  data.source without a fraction option  -> dataset
    eval/<name>.json {"metrics": {"top1": v, ...}}      -> eval_<name>_top1, ...
    eval/<name>.json {"name": ..., "value": v}          -> eval_<name>  (<name> = the file's stem)
    eval/<name>.json {"data": {"name": ..., ...}}       -> eval_<name>_data (from "train"/"test" when older)

A run without `summary.json` gets status "incomplete" and no val_loss. The analysis keeps rows whose
status is "done" or "partial" (pre-training finished, an evaluation missing) or empty, and skips
the rest (failed, pending, running, incomplete) with a message.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mimscale import rundir as R
from mimscale.errors import ResultsError
from mimscale.rundir import RunDir

REQUIRED = ("model", "params", "data_size", "iters", "val_loss")
NUMERIC_OPTIONAL = (
    "data_fraction", "seed", "global_batch", "epochs_equivalent", "best_val_loss", "best_val_step",
    "train_probe_loss",
)
# Summary keys copied as they are (a subset of rundir.SUMMARY_KEYS); renamed ones are in _SUMMARY_RENAME.
_SUMMARY_KEYS = (
    "status", "model", "params", "data_size", "data_fraction", "iters", "global_batch",
    "epochs_equivalent", "best_val_loss", "best_val_step", "images_per_s", "train_time_s", "skipped_steps",
    "skipped_files",
)
_SUMMARY_RENAME = {"final_val_loss": "val_loss", "final_train_probe_loss": "train_probe_loss",
                   "final_train_loss": "train_loss"}
CURVE_COLUMNS = ("run", "step", "split", "name", "value")
USABLE_STATUS = (R.RunState.DONE, R.RunState.PARTIAL)
# The SimMIM losses of a row (an L1 distance: never negative).
SIMMIM_LOSSES = ("val_loss", "train_probe_loss", "best_val_loss", "train_loss")
# Larger numbers are no measurement (a diverged run's 1e308): they are treated as missing, like inf.
LARGEST_VALUE = 1e30
UNNAMED_DATASET = "unnamed"


def is_study_dir(path: Path) -> bool:
    return path.is_dir() and (path / R.STUDY_RUNS).is_dir()


EVAL_DATA_SUFFIX = "_data"  # eval_<name>_data: the data an evaluation used, a text column beside its metrics


def eval_columns(df: pd.DataFrame) -> list[str]:
    """The downstream metric columns (``eval_*`` but not the ``eval_<name>_data`` text columns)."""
    return [c for c in df.columns if str(c).startswith("eval_") and not str(c).endswith(EVAL_DATA_SUFFIX)]


def eval_data_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if str(c).startswith("eval_") and str(c).endswith(EVAL_DATA_SUFFIX)]


def _eval_data(result: dict) -> str | None:
    """The data an evaluation result used, in words (results written before ``data.name`` existed: from the
    sources' descriptions)."""
    data = result.get("data")
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("name"), str):
        return data["name"]
    if isinstance(data.get("train"), dict) and isinstance(data.get("test"), dict):
        from mimscale.evaluate.config import data_name  # omegaconf only

        return data_name(data["train"], data["test"])
    return None


def _evaluation(metric: str) -> str:
    """'eval_ft_final_top1' -> 'eval_ft_': the evaluation a metric column comes from (up to its first key)."""
    m = re.match(r"(eval_[^_]+_)", metric)
    return m.group(1) if m else metric


def identical_metrics(runs: pd.DataFrame, metrics: list[str], prefer: list[str] | None = None
                      ) -> dict[str, list[str]]:
    """metric -> the other columns of the same evaluation equal to it on every run (missing where it is
    missing), e.g. a fine-tuning's final top-1 that is also its reported top-1; the findings show such
    columns once. The kept name: one in `prefer` (the headline metrics), else the shortest."""
    order = sorted(metrics, key=lambda m: (m not in (prefer or []), len(m), metrics.index(m)))
    out: dict[str, list[str]] = {}
    taken: set[str] = set()
    for i, a in enumerate(order):
        if a in taken:
            continue
        x = runs[a].to_numpy(float)
        for b in order[i + 1:]:
            y = runs[b].to_numpy(float)
            if b not in taken and _evaluation(a) == _evaluation(b) and np.array_equal(np.isnan(x), np.isnan(y)) \
                    and np.allclose(x[~np.isnan(x)], y[~np.isnan(y)], rtol=0, atol=1e-12):
                out.setdefault(a, []).append(b)
                taken.add(b)
    return out


def higher_is_better(metric: str) -> bool:
    return not metric.endswith("loss")


def _clean_name(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", str(name)).strip("_").lower()


def _get(d: dict, dotted: str):
    for key in dotted.split("."):
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _number(v):
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def dataset_name(source) -> str | None:
    """A data source spec without its fraction: the name of the dataset a run's subset is drawn from."""
    if source is None:
        return None
    if isinstance(source, dict):
        return ",".join(f"{k}={v}" for k, v in source.items() if k != "fraction") or None
    text = str(source).strip()
    kind, sep, rest = text.partition(":")
    if sep and kind not in ("folder", "shards"):
        rest = ",".join(p for p in rest.split(",") if p.strip() and not p.strip().startswith("fraction="))
        text = f"{kind}:{rest}"
    return text or None


def finetune_metrics(input_path, metrics: list[str]) -> list[str]:
    """The top-1 columns of a study's fine-tuning evaluations (its study.yaml ``evals`` with task finetune):
    the paper's downstream metric, so the one that decides whether held-out loss predicts accuracy. Empty
    for a CSV or a study without fine-tuning."""
    path = Path(input_path) / R.STUDY_FILE
    try:
        doc = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return []
    evals = doc.get("evals") if isinstance(doc, dict) else None
    names = [e.get("name") or e.get("task") for e in evals or [] if isinstance(e, dict) and e.get("task") == "finetune"]
    return [c for c in (f"eval_{_clean_name(n)}_top1" for n in names if n) if c in metrics]


def read_eval(run_dir: Path) -> dict[str, float | str]:
    """Downstream metrics of one run as `eval_*` columns, and the data of each as `eval_<name>_data` (see the
    module docstring for the mapping)."""
    out: dict[str, float | str] = {}
    for path in RunDir(run_dir).eval_results():
        data = R.read_json(path)
        if data is None:
            continue
        stem = _clean_name(path.stem)
        metrics = data.get("metrics")
        if isinstance(metrics, dict):
            for key, value in metrics.items():
                if _number(value) is not None:
                    out[f"eval_{stem}_{_clean_name(key)}"] = _number(value)
        elif "value" in data and _number(data["value"]) is not None:
            out[f"eval_{stem}"] = _number(data["value"])
        if _eval_data(data) is not None:
            out[f"eval_{stem}{EVAL_DATA_SUFFIX}"] = _eval_data(data)
    return out


def read_run(run_dir: Path) -> dict:
    """One results row from a run directory; missing files give missing fields, never an error."""
    run_dir = RunDir(run_dir)
    row: dict = {"run": run_dir.name}
    cfg = {}
    try:
        cfg = yaml.safe_load(run_dir.config.read_text()) or {}
    except (OSError, yaml.YAMLError):
        pass
    cfg = cfg if isinstance(cfg, dict) else {}
    for col, key in (("model", "model.name"), ("data_fraction", "data.fraction"),
                     ("iters", "train.iters"), ("global_batch", "train.batch_size"), ("seed", "seed")):
        if _get(cfg, key) is not None:
            row[col] = _get(cfg, key)
    if dataset_name(_get(cfg, "data.source")) is not None:
        row["dataset"] = dataset_name(_get(cfg, "data.source"))
    summary = run_dir.read_summary()
    if summary is None:
        row["status"] = "incomplete"
    else:
        for key in _SUMMARY_KEYS:
            if summary.get(key) is not None:
                row[key] = summary[key]
        for key, col in _SUMMARY_RENAME.items():
            if summary.get(key) is not None:
                row[col] = summary[key]
        branch = summary.get("branched_from")
        if isinstance(branch, dict):  # trained from another run's checkpoint (shared prefix): "RUN@STEP"
            row["branched_from"] = f"{Path(str(branch.get('trunk'))).name}@{branch.get('step')}"
        row.setdefault("status", R.RunState.DONE)
    row.update(read_eval(run_dir.path))
    return row


def run_dirs(study_dir: Path) -> list[Path]:
    return sorted(p for p in (Path(study_dir) / R.STUDY_RUNS).iterdir() if p.is_dir())


def results_table(study_dir) -> pd.DataFrame:
    """One row per run directory under `study_dir/runs` (pure: reads files, writes nothing)."""
    study_dir = Path(study_dir)
    if not is_study_dir(study_dir):
        raise ResultsError(f"{study_dir} is not a study directory (no runs/ folder)")
    rows = [read_run(p) for p in run_dirs(study_dir)]
    if not rows:
        return pd.DataFrame(columns=["run", *REQUIRED])
    df = pd.DataFrame(rows)
    first = ["run", "status", *REQUIRED, "dataset", "data_fraction", "train_probe_loss"]
    ordered = [c for c in first if c in df.columns]
    rest = [c for c in df.columns if c not in ordered and not c.startswith("eval_")]
    return df[ordered + rest + sorted(eval_columns(df) + eval_data_columns(df))]


def read_curves(run_dir: Path) -> pd.DataFrame:
    """metrics.jsonl of one run in long format; malformed lines (a run still writing) are skipped."""
    rows = []
    for rec in RunDir(run_dir).read_metrics():
        try:
            rows.append((run_dir.name, int(rec["step"]), str(rec["split"]), str(rec["name"]),
                         float(rec["value"])))
        except (ValueError, KeyError, TypeError):
            continue
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


def curves_table(study_dir) -> pd.DataFrame:
    frames = [read_curves(p) for p in run_dirs(Path(study_dir))]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=list(CURVE_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def load_results(input_path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs_df, curves_df) from a study directory or a results CSV; curves_df is empty for a CSV.

    runs_df is *raw*: use `clean_runs` before analysing it. Raises ResultsError on unreadable input.
    """
    path = Path(input_path)
    if is_study_dir(path):
        return results_table(path), curves_table(path)
    if path.is_dir() and (path / "results.csv").is_file():
        path = path / "results.csv"
    if not path.is_file():
        raise ResultsError(f"{input_path}: not a study directory (with runs/) or a CSV file")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ResultsError(f"{input_path}: cannot read as CSV ({err})") from err
    df.columns = [str(c).strip() for c in df.columns]
    if "final_train_probe_loss" in df.columns and "train_probe_loss" not in df.columns:
        df = df.rename(columns={"final_train_probe_loss": "train_probe_loss"})
    return df, pd.DataFrame(columns=list(CURVE_COLUMNS))


def _run_labels(df: pd.DataFrame) -> pd.Series:
    ds = df["dataset"] + ":" if df["dataset"].nunique() > 1 else ""
    base = (df["model"].astype(str) + "|" + ds + "D" + df["data_size"].map(lambda v: f"{v:g}") + "|"
            + df["iters"].map(lambda v: f"{v:g}") + "it")
    dup = base.groupby(base).cumcount()
    return base.where(dup == 0, base + "#" + dup.astype(str))


def _where(df: pd.DataFrame, rows: pd.Series) -> str:
    """", run(s) a, b" (or ", CSV line(s) 2, 3" without run names) for the rows of a message, at most 10."""
    if "run" in df.columns and df.loc[rows, "run"].notna().all():
        return ", run(s) " + ", ".join(df.loc[rows, "run"].astype(str)[:10])
    # a CSV row i is on line i + 2 (header line, 1-based)
    return ", CSV line(s) " + ", ".join(str(i + 2) for i in df.index[rows][:10])


def _without_duplicates(df: pd.DataFrame, messages: list[str]) -> pd.DataFrame:
    """Rows repeated exactly (a table concatenated twice) counted once, with a note: they would pass for runs
    and narrow every CI. Two different rows for one run (its ``run`` name) cannot both be right: refused."""
    df = df.copy()
    repeated = df.astype(str).duplicated(keep="first")  # as text: a cell may hold a list; NaN equals NaN
    if repeated.any():
        messages.append(f"{int(repeated.sum())} row(s) repeating another row exactly{_where(df, repeated)}: "
                        f"counted once")
        df = df[~repeated]
    if "run" in df.columns:
        named = df["run"].notna()
        clash = df[named & df["run"].duplicated(keep=False)]
        if not clash.empty:
            run = clash["run"].iloc[0]
            rows = clash[clash["run"] == run]
            differ = [c for c in rows.columns if rows[c].astype(str).nunique() > 1]
            raise ResultsError(f"run {run} has {len(rows)} rows with different values (in {', '.join(differ[:5])}); "
                               f"keep one row per run")
    return df


def clean_runs(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Validate a raw results table: (usable rows, messages about what was dropped or coerced).

    Raises ResultsError when a required column is missing or no row is usable.
    """
    messages: list[str] = []
    if df.empty:
        raise ResultsError("no usable runs: the table has no rows")
    df = _without_duplicates(df, messages)
    if "status" in df.columns:
        # "partial" (the study runner's word for pre-training finished, an evaluation still missing)
        # has a valid val_loss; its missing eval_* values are simply empty.
        bad = df["status"].notna() & ~df["status"].astype(str).isin(USABLE_STATUS)
        if bad.any():
            counts = df.loc[bad, "status"].astype(str).value_counts().to_dict()
            messages.append(f"skipped {int(bad.sum())} run(s) without a finished pre-training: {counts}")
        df = df[~bad]
        if df.empty:
            raise ResultsError("no usable runs: " + "; ".join(messages))
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ResultsError(f"missing required column(s): {', '.join(missing)} "
                           f"(need {', '.join(REQUIRED)}; have {', '.join(map(str, df.columns))})")
    df["model"] = df["model"].astype(str).str.strip()
    if "dataset" not in df.columns:
        df["dataset"] = UNNAMED_DATASET
    ds = df["dataset"].astype("string").str.strip()
    df["dataset"] = ds.mask(ds.isna() | (ds == ""), UNNAMED_DATASET).astype(str)
    for col in [*REQUIRED[1:], *[c for c in NUMERIC_OPTIONAL if c in df.columns], *eval_columns(df)]:
        raw = df[col]
        num = pd.to_numeric(raw, errors="coerce")
        bad = num.isna() & raw.notna()
        if bad.any():
            examples = ", ".join(repr(v) for v in raw[bad].astype(str).unique()[:3])
            messages.append(f"column {col}: {int(bad.sum())} non-numeric value(s) ({examples}) "
                            f"treated as missing")
        # inf, and numbers no loss or metric reaches (1e308: a diverged run's float), would overflow every fit
        # and figure: missing, said once per column.
        huge = num.notna() & ~(num.abs() <= LARGEST_VALUE)
        if huge.any():
            examples = ", ".join(f"{v:g}" for v in num[huge].unique()[:3])
            messages.append(f"column {col}: {int(huge.sum())} value(s) not finite or above {LARGEST_VALUE:g} "
                            f"({examples}{_where(df, huge)}) treated as missing")
        df[col] = num.where(~huge).astype(float)
    for col in [c for c in SIMMIM_LOSSES if c in df.columns]:
        negative = pd.to_numeric(df[col], errors="coerce") < 0
        if negative.any():
            messages.append(f"column {col}: {int(negative.sum())} negative value(s) ({_where(df, negative)[2:]}): "
                            f"a SimMIM L1 loss cannot be negative; check how this table was made")
    incomplete = df[list(REQUIRED)].isna().any(axis=1) | (df["model"] == "") | (df["model"] == "nan")
    if incomplete.any():
        messages.append(f"dropped {int(incomplete.sum())} run(s) with a missing or non-numeric required "
                        f"value ({_where(df, incomplete)[2:]})")
    df = df[~incomplete]
    for col in ("params", "data_size", "iters"):
        nonpos = df[col] <= 0
        if nonpos.any():
            messages.append(f"dropped {int(nonpos.sum())} run(s) with {col} <= 0")
            df = df[~nonpos]
    if df.empty:
        raise ResultsError("no usable runs: " + ("; ".join(messages) or "the table is empty"))
    if "run" not in df.columns or df["run"].isna().any():
        df["run"] = _run_labels(df)
    df["run"] = df["run"].astype(str)
    return df.reset_index(drop=True), messages


def settings_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per setting (model, dataset, data_size, iters): seeds of a setting are averaged, n_runs
    counts them; `val_loss_sd` is their standard deviation (NaN for one seed)."""
    agg = {"params": ("params", "median"), "val_loss": ("val_loss", "mean"), "n_runs": ("run", "size"),
           "val_loss_sd": ("val_loss", "std"), "runs": ("run", lambda s: list(s))}
    for col in ("train_probe_loss", "data_fraction", "epochs_equivalent", *eval_columns(runs)):
        if col in runs.columns:
            agg[col] = (col, "mean")
    if "series" in runs.columns:
        agg["series"] = ("series", "first")
    keys = ["model", "dataset", "data_size", "iters"] if "dataset" in runs.columns else [
        "model", "data_size", "iters"]
    out = runs.groupby(keys, as_index=False).agg(**agg)
    return out.sort_values(["params", "model", "iters", *keys[1:-1]]).reset_index(drop=True)
