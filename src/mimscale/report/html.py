"""The self-contained HTML report: inline CSS, images as base64 data URIs, no scripts, no network."""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
from pathlib import Path

import pandas as pd

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232a;background:#fff}
main{max-width:1280px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:1.6em;margin:0 0 4px}h2{margin-top:36px;border-bottom:2px solid #e3e6ea;padding-bottom:4px}
.verdict-yes{color:#1a7f37;font-weight:600}.verdict-partly{color:#9a6700;font-weight:600}.verdict-no{color:#cf222e;font-weight:600}
.meta{color:#5b6570;font-size:.9em}
.summary{background:#f3f7fb;border-left:4px solid #2f6fae;padding:12px 20px;margin:20px 0}
.summary li{margin:6px 0;line-height:1.45}
figure{margin:18px 0 28px}figure img{max-width:100%;height:auto;border:1px solid #e3e6ea}
figcaption{color:#444;font-size:.92em;margin-top:6px;max-width:1000px}
table{border-collapse:collapse;font-size:.85em;margin:8px 0 16px}
th,td{border:1px solid #d6dade;padding:3px 6px;text-align:right;vertical-align:top}
th{background:#eef1f4}td.text{text-align:left}td.long{text-align:left;min-width:18em;max-width:40em}
.scroll{overflow-x:auto;max-width:100%}
tr.flag td{background:#fde8e6}
.gallery td{text-align:center}.gallery img{width:180px;image-rendering:pixelated;border:1px solid #ccc}
.msg li{color:#7a4b00}
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


def table(df: pd.DataFrame, columns: list[str] | None = None, flag_col: str | None = None) -> str:
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
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def figure(path: Path, title: str, caption: str) -> str:
    return (f"<figure>{img(path, title)}<figcaption><b>{html.escape(title)}.</b> {html.escape(caption)}"
            "</figcaption></figure>")


def gallery(rows: list[dict]) -> str:
    """rows: {label, cells: [{size, path | None, caption}]}, same column sizes in every row."""
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
    return f'<table class="gallery"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def paper_findings(rows: list[dict]) -> str:
    """The paper's three findings checked on this grid: verdict and the numbers behind it."""
    if not rows:
        return ""
    items = "".join(f"<tr><th class='text'>{html.escape(r['finding'])}</th><td class='verdict-{r['verdict']}'>"
                    f"{html.escape(r['verdict'])}</td><td class='text'>{html.escape(r['text'])}</td></tr>"
                    for r in rows)
    return ("<section><h2>The paper's findings on this data</h2><table><thead><tr><th>finding</th>"
            f"<th>appears?</th><th>numbers</th></tr></thead><tbody>{items}</tbody></table></section>")


def page(res: dict, figures: list[dict], tables: dict[str, str], gallery_html: str | None) -> str:
    """The whole document. figures: {path, title, caption, section}; tables: section title -> HTML."""
    cfg = res["config"]
    when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    primary = (f" Primary dataset (the held-out set's): {cfg['primary_dataset']} ({cfg['primary_dataset_basis']})"
               + ("; every dataset treated as the same distribution" if cfg.get("same_distribution") else "")
               + "." if len(res.get("datasets") or []) > 1 else "")
    meta = (f"Input: {res['input']} ({res['kind']}), {res['n_runs']} runs. Generated {when}.{primary} Overfitting "
            f"tolerance {cfg['tolerance']:.2g} (loss units; {cfg.get('tolerance_basis', 'set by the caller')}); CIs: {int(round(100 * cfg['ci_level']))}% "
            f"{cfg['ci_method']} ({cfg['n_boot']} resamples for correlations, {cfg['fit_boot']} for fits, "
            f"seed {cfg['seed']}).")
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>mimscale report: "
             f"{html.escape(Path(res['input']).name)}</title><style>{CSS}</style></head><body><main>",
             f"<h1>Data-scaling study report: {html.escape(Path(res['input']).name)}</h1>",
             f"<p class='meta'>{html.escape(meta)}</p>",
             "<section class='summary'><h2 style='border:0;margin-top:4px'>Findings</h2><ul>",
             *(f"<li>{html.escape(s)}</li>" for s in res["summary"]), "</ul></section>",
             paper_findings(res.get("paper_findings") or [])]
    for f in figures:
        parts.append(f"<h2>{html.escape(f['section'])}</h2>" + figure(f["path"], f["title"], f["caption"]))
        if f["section"] in tables:
            parts.append(tables.pop(f["section"]))
    for title, body in tables.items():
        parts.append(f"<h2>{html.escape(title)}</h2>{body}")
    if gallery_html is not None:
        parts.append("<h2>Reconstructions</h2><p>Each run's latest reconstruction picture (the same held-out "
                     "images across the grid); rows are model and length, columns data size.</p>" + gallery_html)
    if res["messages"]:
        parts.append("<h2>Notes on the input</h2><ul class='msg'>"
                     + "".join(f"<li>{html.escape(m)}</li>" for m in res["messages"]) + "</ul>")
    parts.append("<p class='meta'>Figures are also in figures/ as PNG, tables in tables/ as CSV.</p>"
                 "</main></body></html>")
    return "\n".join(parts)
