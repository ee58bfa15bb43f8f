"""Figures of the report, drawn with matplotlib's object API on the Agg canvas.

`matplotlib.figure.Figure` is used directly (not pyplot), so no global backend or figure state is
touched and nothing needs a display. Each function saves one PNG (the one the HTML embeds), and the
same figure in every other format asked for beside it (`Output`), and returns the PNG's path. Axes are
labelled in words (labels.py), accuracies drawn in percent, legends in numeric order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..analysis.correlation import model_order
from ..analysis.results import settings_table
from ..analysis.summary import human
from ..errors import ConfigError
from ..rundir import atomic_write
from .labels import metric_label, metric_words, shown

DPI = 100
FORMATS = ("png", "svg", "pdf")


@dataclass(frozen=True)
class Output:
    """How figures are written: PNG always (the HTML embeds it), plus any of svg and pdf for papers; dpi
    applies to the PNG (and to raster parts of the others)."""

    formats: tuple[str, ...] = ("png",)
    dpi: int = DPI

    def __post_init__(self):
        object.__setattr__(self, "formats", ("png", *(f for f in dict.fromkeys(self.formats) if f != "png")))


def output(formats="png", dpi: int = DPI) -> Output:
    """Output from the command's spelling: formats as 'png,svg,pdf' or a sequence. Bad values are a
    ConfigError (one line, exit 2)."""
    names = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats)]
    bad = [f for f in names if f not in FORMATS]
    if bad or not any(names):
        raise ConfigError(f"figure format {', '.join(bad) or repr(formats)} is not one of {', '.join(FORMATS)} "
                          "(comma-separated, e.g. png,svg,pdf)")
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 20 <= dpi <= 1200:
        raise ConfigError(f"figure dpi {dpi!r} must be a whole number from 20 to 1200")
    return Output(tuple(n for n in names if n), dpi)


def _save(fig: Figure, path: Path, out: Output) -> Path:
    for fmt in out.formats:
        atomic_write(path.with_suffix(f".{fmt}"),
                     lambda f, fmt=fmt: fig.savefig(f, format=fmt, dpi=out.dpi, bbox_inches="tight"))
    return path


def _colors(n: int, cmap: str = "viridis") -> list:
    cm = matplotlib.colormaps[cmap]
    return [cm(v) for v in np.linspace(0.05, 0.85, max(n, 1))]


def _grid(nrows: int, ncols: int, w: float = 4.2, h: float = 3.2, **kw):
    fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _size_ticks(ax, sizes) -> None:
    """Log x axis ticked at the grid's data sizes (not at powers of ten)."""
    ax.set_xscale("log")
    ax.set_xticks(list(sizes), [human(s) for s in sizes])
    ax.minorticks_off()


def _len_label(it: float) -> str:
    return f"{int(it):,} iterations"


def loss_curves(curves: pd.DataFrame, runs: pd.DataFrame, path: Path, out: Output = Output()) -> Path | None:
    """Held-out (solid) and train-probe (dashed) loss vs step; rows = lengths, columns = models."""
    loss = curves[(curves["name"] == "loss") & curves["split"].isin(["val", "train_probe"])
                  & curves["run"].isin(runs["run"])]
    if loss.empty:
        return None
    models, lengths = model_order(runs), sorted(runs["iters"].unique())
    sizes = sorted(runs["data_size"].unique())
    color = dict(zip(sizes, _colors(len(sizes))))
    fig, axes = _grid(len(lengths), len(models), sharey=True)
    by_run = runs.set_index("run")
    for (run, split), c in loss.groupby(["run", "split"]):
        r = by_run.loc[run]
        ax = axes[lengths.index(r["iters"]), models.index(r["model"])]
        c = c.sort_values("step")
        ax.plot(c["step"], c["value"], color=color[r["data_size"]], lw=1.4 if split == "val" else 1.0,
                ls="-" if split == "val" else "--", alpha=1.0 if split == "val" else 0.6,
                label=f"{human(r['data_size'])} images" if split == "val" else None)
    for i, it in enumerate(lengths):
        for j, m in enumerate(models):
            ax = axes[i, j]
            ax.set_title(f"{m}, {_len_label(it)}", fontsize=10)
            ax.set_xlabel("pre-training step")
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("loss (solid: held-out, dashed: train probe)", fontsize=8)
    # One entry per data size, smallest first (the panels are drawn in run order, not size order).
    label_of = {f"{human(d)} images": d for d in sizes}
    uniq = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            uniq.setdefault(lab, h)
    order = sorted(uniq, key=lambda lab: label_of.get(lab, float("inf")))
    fig.legend([uniq[lab] for lab in order], order, loc="outside right upper", title="pre-training images",
               fontsize=8)
    return _save(fig, path, out)


def _fit_curve(fit: dict, xs: np.ndarray) -> np.ndarray:
    p = fit.get("estimate") or fit
    return p["E"] + p["B"] * np.power(xs, -p["beta"])


def _primary(runs: pd.DataFrame, primary: str | None) -> str | None:
    if "series" not in runs.columns:
        return None
    return primary if primary is not None else runs["series"].value_counts().index[0]


def _series_line(ax, st: pd.DataFrame, col: str, primary: str | None, color, label: str) -> pd.DataFrame:
    """One model at one length: a line along the primary series, open markers for other series (not
    joined to it: another dataset is not further along the same data axis). Returns the primary part."""
    st = st.sort_values("data_size")
    main = st if primary is None else st[st["series"] == primary]
    if not main.empty:
        ax.plot(main["data_size"], main[col], "o-", color=color, label=label)
    for series, other in ([] if primary is None else st[st["series"] != primary].groupby("series")):
        ax.plot(other["data_size"], other[col], "s", mfc="none", color=color, label=f"{label} ({series})")
    return main


def loss_vs_data(runs: pd.DataFrame, per_model_fits: list[dict], path: Path, primary: str | None = None,
                 out: Output = Output()) -> Path:
    """Final held-out loss vs data size per model, one panel per length; dashed: fitted L(D)."""
    st = settings_table(runs)
    primary = _primary(runs, primary)
    models, lengths = model_order(runs), sorted(runs["iters"].unique())
    color = dict(zip(models, _colors(len(models), "plasma")))
    fig, axes = _grid(1, len(lengths), sharey=True)
    for j, it in enumerate(lengths):
        ax = axes[0, j]
        for m in models:
            s = st[(st["model"] == m) & (st["iters"] == it)]
            if s.empty:
                continue
            main = _series_line(ax, s, "val_loss", primary, color[m], m)
            r = runs[(runs["model"] == m) & (runs["iters"] == it)]
            ax.scatter(r["data_size"], r["val_loss"], s=8, color=color[m], alpha=0.4)
            fit = next((f for f in per_model_fits if f["model"] == m and f["iters"] == it
                        and f.get("series", primary) == primary and (f.get("estimate") or f).get("beta") is not None),
                       None)
            if fit is not None and not main.empty:
                xs = np.geomspace(main["data_size"].min(), main["data_size"].max(), 50)
                ax.plot(xs, _fit_curve(fit, xs), "--", color=color[m], lw=1, alpha=0.8)
        _size_ticks(ax, sorted(runs["data_size"].unique()))
        ax.set_title(_len_label(it), fontsize=10)
        ax.set_xlabel("pre-training images (log)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("final held-out loss")
    axes[0, 0].legend(fontsize=8, title="model (dashed: L(D) fit)", title_fontsize=8)
    return _save(fig, path, out)


def _in_shown_units(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    df = df.copy()
    for m in metrics:
        df[m] = shown(df[m], m)
    return df


def metric_vs_data(runs: pd.DataFrame, metrics: list[str], path: Path, primary: str | None = None,
                   aliases: dict[str, list[str]] | None = None, out: Output = Output()) -> Path | None:
    """Each downstream metric vs data size; rows = metrics, columns = lengths, a line per model.
    aliases: metric -> other names of the same numbers (named in its label, not drawn again)."""
    if not metrics:
        return None
    aliases = aliases or {}
    st = _in_shown_units(settings_table(runs), metrics)
    primary = _primary(runs, primary)
    models, lengths = model_order(runs), sorted(runs["iters"].unique())
    color = dict(zip(models, _colors(len(models), "plasma")))
    fig, axes = _grid(len(metrics), len(lengths), sharey="row")
    for i, metric in enumerate(metrics):
        for j, it in enumerate(lengths):
            ax = axes[i, j]
            for m in models:
                s = st[(st["model"] == m) & (st["iters"] == it)].dropna(subset=[metric])
                if not s.empty:
                    _series_line(ax, s, metric, primary, color[m], m)
            _size_ticks(ax, sorted(runs["data_size"].unique()))
            ax.set_title(f"{metric_words(metric)}, {_len_label(it)}", fontsize=10)
            ax.set_xlabel("pre-training images (log)")
            ax.grid(alpha=0.3)
        axes[i, 0].set_ylabel(metric_label(metric, aliases.get(metric, ())))
    axes[0, 0].legend(fontsize=8, title="model", title_fontsize=8)
    return _save(fig, path, out)


def loss_vs_metric(runs: pd.DataFrame, metrics: list[str], correlation: list[dict], path: Path,
                   aliases: dict[str, list[str]] | None = None, out: Output = Output()) -> Path | None:
    """Scatter of held-out loss vs each metric (colour: model, marker: length), correlations in titles."""
    if not metrics:
        return None
    aliases = aliases or {}
    runs = _in_shown_units(runs, metrics)
    models, lengths = model_order(runs), sorted(runs["iters"].unique())
    color = dict(zip(models, _colors(len(models), "plasma")))
    marker = dict(zip(lengths, "os^Dv<>p*"))
    ncols = min(3, len(metrics))
    nrows = -(-len(metrics) // ncols)
    fig, axes = _grid(nrows, ncols)
    for k, metric in enumerate(metrics):
        ax = axes[k // ncols, k % ncols]
        for m in models:
            for it in lengths:
                r = runs[(runs["model"] == m) & (runs["iters"] == it)].dropna(subset=[metric])
                ax.scatter(r["val_loss"], r[metric], color=color[m], marker=marker.get(it, "o"), s=28,
                           label=f"{m}, {int(it):,} it")
        c = next((c for c in correlation if c["metric"] == metric and c["group"] == "all"), None)
        words = metric_words(metric)
        if c and c.get("pearson") is not None:
            title = f"{words}\nall n={c['n']}: Pearson {c['pearson']:.2f}, Spearman {c['spearman']:.2f}"
        else:
            title = f"{words}\n{(c or {}).get('message') or 'no correlation'}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("final held-out loss")
        ax.set_ylabel(metric_label(metric, aliases.get(metric, ())))
        ax.grid(alpha=0.3)
    for k in range(len(metrics), nrows * ncols):
        axes[k // ncols, k % ncols].set_visible(False)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    return _save(fig, path, out)


def grid_heatmap(overfit: pd.DataFrame, runs: pd.DataFrame, path: Path, out: Output = Output()) -> Path | None:
    """The grid: held-out loss per (model, data size), one panel per length; second row the train/val
    gap where logged. Cells flagged as overfitting are outlined in red."""
    if overfit.empty:
        return None
    models, lengths = model_order(runs), sorted(runs["iters"].unique())
    overfit = overfit.copy()
    several = "dataset" in overfit.columns and overfit["dataset"].nunique() > 1
    cols = overfit[["dataset", "data_size"]].drop_duplicates() if several else overfit[["data_size"]].drop_duplicates()
    cols = cols.sort_values(["data_size", *(["dataset"] if several else [])])
    labels = [f"{human(r.data_size)}\n{r.dataset}" if several else human(r.data_size) for r in cols.itertuples()]
    overfit["column"] = (overfit["dataset"] + "|" + overfit["data_size"].map(str)) if several else overfit["data_size"]
    sizes = list(cols["dataset"] + "|" + cols["data_size"].map(str)) if several else list(cols["data_size"])
    rows = [("val_loss", "held-out loss", "viridis")]
    if overfit["gap"].notna().any():
        rows.append(("gap", "train/val gap", "magma"))
    fig, axes = _grid(len(rows), len(lengths), w=0.9 * len(sizes) + 2.2, h=0.55 * len(models) + 1.6)
    for i, (col, label, cmap) in enumerate(rows):
        vmin, vmax = overfit[col].min(), overfit[col].max()
        for j, it in enumerate(lengths):
            ax = axes[i, j]
            sub = overfit[overfit["iters"] == it]
            grid = sub.pivot_table(index="model", columns="column", values=col).reindex(index=models, columns=sizes)
            flags = sub.pivot_table(index="model", columns="column", values="flag", aggfunc="max").reindex(
                index=models, columns=sizes)
            im = ax.imshow(grid.to_numpy(dtype=float), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
            for (a, b), v in np.ndenumerate(grid.to_numpy(dtype=float)):
                if np.isfinite(v):
                    frac = (v - vmin) / (vmax - vmin) if vmax > vmin else 0.5
                    ax.text(b, a, f"{v:.3f}", ha="center", va="center", fontsize=8,
                            color="black" if frac > 0.6 else "white")
                if flags.iloc[a, b] == 1:
                    ax.add_patch(Rectangle((b - 0.5, a - 0.5), 1, 1, fill=False, ec="red", lw=2.5))
            ax.set_xticks(range(len(sizes)), labels)
            ax.set_yticks(range(len(models)), models)
            ax.set_xlabel("pre-training images")
            ax.set_title(f"{label}, {_len_label(it)}", fontsize=10)
        fig.colorbar(im, ax=list(axes[i]), shrink=0.9, label=label)
    return _save(fig, path, out)
