"""The self-contained HTML report: inline CSS, images as base64 data URIs, no scripts, no network."""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
import re
from pathlib import Path

import pandas as pd

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232a;background:#fff}
main{max-width:1280px;margin:0 auto;padding:20px 32px 64px;box-sizing:border-box}
h1{font-size:1.6em;margin:0 0 4px}h2{margin-top:36px;border-bottom:2px solid #e3e6ea;padding-bottom:4px}
.meta{color:#5b6570;font-size:.9em;overflow-wrap:anywhere;margin:4px 0}
details>summary{cursor:pointer}
.verdicts{background:#f3f7fb;border-left:4px solid #2f6fae;padding:8px 16px;margin:14px 0}
.verdicts h2{border:0;margin:4px 0 6px;font-size:1.15em}
.verdicts details{margin:4px 0}.verdicts summary{font-size:1.05em;line-height:1.5}
.verdicts details p{margin:4px 0 10px 1.2em;font-size:.92em;line-height:1.45;overflow-wrap:anywhere}
.badge{display:inline-block;min-width:4.2em;text-align:center;border-radius:4px;padding:0 6px;margin-right:6px;
 font-weight:700;font-size:.85em;text-transform:uppercase;color:#fff;background:#6e7781}
.badge.yes{background:#1a7f37}.badge.partly{background:#9a6700}.badge.no{background:#cf222e}
nav.toc{margin:10px 0}nav.toc ol{columns:3 15em;margin:6px 0;padding-left:1.4em}nav.toc li{margin:2px 0}
.findings li{margin:6px 0;line-height:1.45;overflow-wrap:anywhere}
figure{margin:18px 0 28px;min-width:0}figure img{max-width:100%;height:auto;border:1px solid #e3e6ea;display:block}
figure a.zoom{cursor:zoom-in;display:inline-block;max-width:100%}
figure .close{display:none}
figure:target{position:fixed;inset:0;margin:0;z-index:10;background:#14181c;overflow:auto;padding:8px}
figure:target img{max-width:none;background:#fff}figure:target a.zoom{cursor:default;max-width:none}
figure:target figcaption{color:#eee}
figure:target .close{display:block;position:sticky;top:0;left:0;width:max-content;color:#fff;background:#2f6fae;
 padding:4px 12px;border-radius:4px;text-decoration:none;margin-bottom:6px}
figcaption{color:#444;font-size:.92em;margin-top:6px;max-width:1000px}
table{border-collapse:collapse;font-size:.85em;margin:8px 0 16px}
th,td{border:1px solid #d6dade;padding:3px 6px;text-align:right;vertical-align:top}
th{background:#eef1f4}td.text{text-align:left}td.long{text-align:left;min-width:18em;max-width:40em}
.scroll{overflow-x:auto;max-width:100%}
tr.flag td{background:#fde8e6}
.gallery td{text-align:center}.gallery img{width:180px;image-rendering:pixelated;border:1px solid #ccc}
.msg li{color:#7a4b00;overflow-wrap:anywhere}
@media (max-width:640px){main{padding:10px 12px 40px}h1{font-size:1.25em}h2{margin-top:26px;font-size:1.2em}
 .verdicts{padding:6px 10px}.gallery img{width:120px}}
"""


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def img(path: Path, alt: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<img{c} src="{data_uri(path)}" alt="{html.escape(alt)}">'


def fmt(v) -> str:
    """Numbers for people: thousands separators for large values, 4 significant digits otherwise."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float):
        if abs(v) >= 1000 and float(v).is_integer():
            return f"{int(v):,}"
        return f"{v:.4g}"
    if isinstance(v, list | tuple) and len(v) == 2:
        return f"[{fmt(v[0])}, {fmt(v[1])}]"
    return str(v)


TEXT = ("model", "group", "metric", "run", "expected_sign", "dataset", "series", "shared_sizes")
LONG_TEXT = ("reason", "message", "note", "identification")


def _cls(col: str) -> str:
    if col in LONG_TEXT:
        return ' class="long"'
    return ' class="text"' if col in TEXT or col.endswith(".run") else ""


# Tables longer than this are folded behind their row count: the figure above says it at a glance.
FOLD_ROWS = 12


def slug(title: str) -> str:
    """An anchor for a section title: 'Gain from more data' -> 'gain-from-more-data'."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


def table(df: pd.DataFrame, columns: list[str] | None = None, flag_col: str | None = None,
          name: str = "table") -> str:
    if df is None or df.empty:
        return "<p><em>nothing to show</em></p>"
    # Columns with nothing in them (e.g. `message` when every item worked) only cost width.
    columns = [c for c in (columns or list(df.columns)) if c in df.columns and df[c].notna().any()]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for _, r in df.iterrows():
        cls = ' class="flag"' if flag_col and bool(r.get(flag_col)) else ""
        cells = "".join(f"<td{_cls(c)}>{html.escape(fmt(r[c]))}</td>" for c in columns)
        body.append(f"<tr{cls}>{cells}</tr>")
    out = f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    if len(df) <= FOLD_ROWS:
        return out
    flagged = int(df[flag_col].fillna(False).astype(bool).sum()) if flag_col and flag_col in df.columns else 0
    note = f", {flagged} flagged" if flagged else ""
    return f"<details><summary>{html.escape(name)}: {len(df)} rows{note}</summary>{out}</details>"


def figure(path: Path, title: str, caption: str, anchor: str, back: str) -> str:
    """A figure that fits the page's width; clicking it shows it at full size over the page (CSS :target,
    no script, the same embedded image), and 'close' goes back to its section."""
    return (f"<figure id='{anchor}'><a class='close' href='#{back}'>close &#x2715;</a>"
            f"<a class='zoom' href='#{anchor}' title='click to enlarge'>{img(path, title)}</a>"
            f"<figcaption><b>{html.escape(title)}.</b> {html.escape(caption)} <em>(Click to enlarge.)</em>"
            "</figcaption></figure>")


def gallery(rows: list[dict]) -> str:
    """rows: {label, cells: [{size, path | None, caption}]}, same column sizes in every row. Scrolls sideways
    when it is wider than the screen."""
    if not rows:
        return "<p><em>no reconstruction pictures were saved by the runs</em></p>"
    sizes = [c["size"] for c in rows[0]["cells"]]
    head = "<th></th>" + "".join(f"<th>{html.escape(fmt(s))} images</th>" for s in sizes)
    body = []
    for r in rows:
        cells = "".join(
            f"<td>{img(c['path'], c['caption'])}<br><small>{html.escape(c['caption'])}</small></td>"
            if c["path"] else "<td><em>none</em></td>" for c in r["cells"])
        body.append(f'<tr><th class="text">{html.escape(r["label"])}</th>{cells}</tr>')
    return (f'<div class="scroll"><table class="gallery"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def verdicts(rows: list[dict]) -> str:
    """The paper's three findings checked on this grid: one line each (verdict, finding), the numbers
    behind a fold."""
    if not rows:
        return ""
    items = "".join(
        f"<details class='verdict'><summary><span class='badge {html.escape(r['verdict'])}'>"
        f"{html.escape(r['verdict'])}</span>{html.escape(r['finding'])}</summary>"
        f"<p>{html.escape(r['text'])}</p></details>" for r in rows)
    return ("<section class='verdicts' id='verdicts'><h2>The paper's findings on this data</h2>"
            f"{items}</section>")


# Sentences of the summary that say the same thing for each downstream metric: listed under one fold.
PER_METRIC_PREFIX = "Validation loss vs "


def findings(sentences: list[str]) -> str:
    """Every sentence of the analysis' summary, folded: the first (the overview) stays in view, the
    per-metric correlation sentences are one more fold inside."""
    if not sentences:
        return ""
    head, rest = sentences[0], sentences[1:]
    per_metric = [s for s in rest if s.startswith(PER_METRIC_PREFIX)]
    items, folded = [], False
    for s in rest:
        if not s.startswith(PER_METRIC_PREFIX):
            items.append(f"<li>{html.escape(s)}</li>")
        elif not folded:  # the fold stands where the first of them stood
            inner = "".join(f"<li>{html.escape(x)}</li>" for x in per_metric)
            items.append(f"<li><details><summary>Validation loss vs each downstream metric "
                         f"({len(per_metric)})</summary><ul>{inner}</ul></details></li>")
            folded = True
    body = (f"<details><summary>All {len(rest)} findings</summary><ul>{''.join(items)}</ul></details>"
            if items else "")
    return f"<section class='findings' id='findings'><h2>Findings</h2><p>{html.escape(head)}</p>{body}</section>"


def _meta(res: dict) -> tuple[str, str]:
    """(one line in view, the analysis settings behind a fold)."""
    cfg = res["config"]
    when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    primary = (f" Primary dataset (the held-out set's): {cfg['primary_dataset']} ({cfg['primary_dataset_basis']})"
               + ("; every dataset treated as the same distribution" if cfg.get("same_distribution") else "")
               + "." if len(res.get("datasets") or []) > 1 else "")
    short = f"Input: {res['input']} ({res['kind']}), {res['n_runs']} runs. Generated {when}."
    details = (f"{primary.strip()} Overfitting tolerance {cfg['tolerance']:.2g} (loss units; "
               f"{cfg.get('tolerance_basis', 'set by the caller')}); CIs: {int(round(100 * cfg['ci_level']))}% "
               f"{cfg['ci_method']} ({cfg['n_boot']} resamples for correlations, {cfg['fit_boot']} for fits, "
               f"seed {cfg['seed']}).").strip()
    return short, details


def page(res: dict, figures: list[dict], tables: dict[str, str], gallery_html: str | None,
         summary: list[str] | None = None, figure_formats: tuple[str, ...] = ("png",)) -> str:
    """The whole document: verdicts first, a table of contents, the findings folded, then one section per
    figure (its table under it), the other tables, the gallery and the notes. figures: {path, title, caption,
    section}; tables: section title -> HTML; summary: the sentences to list (default: res['summary'])."""
    short, settings = _meta(res)
    sections: list[tuple[str, str]] = []  # (title, body)
    tables = dict(tables)
    for f in figures:
        sid = slug(f["section"])
        body = figure(f["path"], f["title"], f["caption"], f"fig-{slug(f['title'])}", sid)
        sections.append((f["section"], body + tables.pop(f["section"], "")))
    sections += list(tables.items())
    if gallery_html is not None:
        sections.append(("Reconstructions", "<p>Each run's latest reconstruction picture (the same held-out "
                         "images across the grid); rows are model and length, columns data size.</p>"
                         + gallery_html))
    if res["messages"]:
        msgs = "".join(f"<li>{html.escape(m)}</li>" for m in res["messages"])
        sections.append(("Notes on the input", f"<details><summary>{len(res['messages'])} notes</summary>"
                         f"<ul class='msg'>{msgs}</ul></details>"))
    summary = res["summary"] if summary is None else summary
    toc = ([("verdicts", "The paper's findings on this data")] if res.get("paper_findings") else []) + (
        [("findings", "Findings")] if summary else []) + [(slug(t), t) for t, _ in sections]
    name = html.escape(Path(res["input"]).name)
    files = ", ".join(f.upper() for f in figure_formats)
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             "<meta name='viewport' content='width=device-width, initial-scale=1'>"
             f"<title>mimscale report: {name}</title><style>{CSS}</style></head><body><main>",
             f"<h1>Data-scaling study report: {name}</h1>",
             f"<p class='meta'>{html.escape(short)}</p>",
             verdicts(res.get("paper_findings") or []),
             f"<details class='meta'><summary>Analysis settings</summary>{html.escape(settings)}</details>",
             "<nav class='toc'><b>Contents</b><ol>"
             + "".join(f"<li><a href='#{a}'>{html.escape(t)}</a></li>" for a, t in toc) + "</ol></nav>",
             findings(summary)]
    parts += [f"<section id='{slug(t)}'><h2>{html.escape(t)}</h2>{body}</section>" for t, body in sections]
    parts.append(f"<p class='meta'>Figures are also in figures/ as {files}, tables in tables/ as CSV.</p>"
                 "</main></body></html>")
    return "\n".join(parts)
