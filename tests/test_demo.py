"""The main job end to end: `mimscale demo --quick` through main(argv), and (slow) the full demo."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from mimscale.cli import main


def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    report = out / "report" / "report.html"
    assert stdout.strip().splitlines()[-1] == f"report: {report.resolve()}"
    html = report.read_text()
    figures = sorted((out / "report" / "figures").glob("*.png"))
    assert len(figures) >= 5
    # every figure is embedded (self-contained: base64 PNGs, no links to files)
    assert len(re.findall(r'src="data:image/png;base64,', html)) >= len(figures)
    assert 'src="figures/' not in html
    assert "The paper&#x27;s findings on this data" in html or "The paper's findings on this data" in html
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 8 and results["val_loss"].notna().all()
    assert {"eval_linear_top1", "eval_knn_top1"} <= set(results.columns)
    assert results["eval_knn_top1"].between(0, 1).all()
    for run in (out / "runs").iterdir():
        assert (run / "summary.json").exists() and (run / "eval" / "linear.json").exists()
    # rerunning resumes: nothing left to do, same report
    assert main(["demo", "--quick", "--out", str(out)]) == 0


@pytest.mark.slow
def test_full_demo_shows_the_findings_it_reports():
    """Runs the full demo (about 20 minutes on 2 cores) or reads its output when present."""
    out = Path("runs/demo")
    if not (out / "report" / "tables" / "analysis.json").exists():
        assert main(["demo", "--out", str(out)]) == 0
    res = json.loads((out / "report" / "tables" / "analysis.json").read_text())
    findings = {f["finding"]: f for f in res["paper_findings"]}
    html = (out / "report" / "report.html").read_text()
    for f in findings.values():
        assert f["verdict"] in ("yes", "partly", "no")
        assert f["text"].split(":")[0] in html.replace("&#x27;", "'")
    corr = findings["validation loss predicts downstream accuracy"]["numbers"]
    assert min(corr.values()) <= -0.7
    over = findings["overfitting on small data"]["numbers"]
    assert over["gap_ratio"] >= 3 and not over["full_pool_rises"]
