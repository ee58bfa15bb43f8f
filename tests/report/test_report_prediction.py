"""The report's prediction section: the fit (features, leave-one-out error, interval) and every run's measured
and predicted values, the predicted ones marked as predicted; no section without a downstream metric."""

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
from paper_grid import paper_grid  # noqa: E402

from mimscale.report import build_report  # noqa: E402

FAST = {"n_boot": 50, "fit_boot": 5}
TITLE = "Downstream metrics predicted from held-out loss"


def _cells(text: str, row_start: str) -> list[str]:
    return re.findall(r"<td[^>]*>([^<]*)</td>", text[text.index(row_start):text.index("</tr>", text.index(row_start))])


def test_the_prediction_table_marks_predicted_values(tmp_path):
    df = paper_grid(top1_noise=0.004)
    hide = np.random.default_rng(0).random(len(df)) < 0.75
    df.loc[hide, "eval_finetune_top1"] = np.nan
    df.to_csv(tmp_path / "r.csv", index=False)
    text = build_report(tmp_path / "r.csv", tmp_path / "rep", **FAST).read_text()
    assert f">{TITLE}<" in text
    section = text[text.index("<section id='downstream-metrics-predicted-from-held-out-loss'>"):]
    section = section[:section.index("</section>")]
    fits = pd.read_csv(tmp_path / "rep" / "tables" / "prediction_fits.csv")
    loo = fits["loo_mae"].iloc[0]
    assert f"<td>{loo:.4g}</td>" in section and "val_loss + log10(params)" in section
    assert section.count("<td>predicted</td>") == int(hide.sum())
    assert section.count("<td>measured</td>") == int((~hide).sum())
    hidden = df["run"][hide].iloc[0]
    assert "predicted" in _cells(section, f">{hidden}</td>")


def test_no_prediction_section_without_a_downstream_metric(tmp_path):
    df = paper_grid().drop(columns=[c for c in paper_grid().columns if c.startswith("eval_")])
    df.to_csv(tmp_path / "r.csv", index=False)
    assert f">{TITLE}<" not in build_report(tmp_path / "r.csv", tmp_path / "rep", **FAST).read_text()
