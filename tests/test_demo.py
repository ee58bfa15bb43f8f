"""The main job end to end: `mimscale demo --quick` through main(argv), and (slow) the full demo."""

import html
import json
import re

import pandas as pd
import pytest

from mimscale.cli import main


def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    report = out / "report" / "report.html"
    assert stdout.strip().splitlines()[-1] == f"report: {report.resolve()}"
    page = report.read_text()
    figures = sorted((out / "report" / "figures").glob("*.png"))
    assert len(figures) >= 5
    # every figure is embedded (self-contained: base64 PNGs, no links to files)
    assert len(re.findall(r'src="data:image/png;base64,', page)) >= len(figures)
    assert 'src="figures/' not in page
    assert "The paper's findings on this data" in html.unescape(page)
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 8 and results["val_loss"].notna().all()
    assert {"eval_finetune_top1", "eval_linear_top1", "eval_knn_top1"} <= set(results.columns)
    assert results["eval_knn_top1"].between(0, 1).all()
    for run in (out / "runs").iterdir():
        assert (run / "summary.json").exists() and (run / "eval" / "linear.json").exists()
        assert (run / "eval" / "finetune.json").exists()
    record = json.loads((out / "demo.json").read_text())
    assert (record["data"], record["seed"], record["backbone"], record["quick"]) == ("shapes", 0, "vit", True)
    assert record["seconds"] > 0
    # Rerunning a finished demo resumes with nothing left to train and keeps the record of the call that did
    # the work: its time (a marked one here, so that a recomputed time shows), and "fresh" only when it had one
    # (a record written before the key existed does not gain one: unknown is not "resumed"). One rerun, ~12 s
    # of CPU (BENCHMARKS.md, "CI"), checks both (a kept "fresh": true, the same code path, is not rerun for).
    assert record["fresh"] is True  # every run trained by this call
    legacy = {k: v for k, v in record.items() if k != "fresh"} | {"seconds": 1234.5}
    (out / "demo.json").write_text(json.dumps(legacy))
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    assert json.loads((out / "demo.json").read_text()) == legacy
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"report: {report.resolve()}"


@pytest.mark.slow
def test_full_demo_states_the_findings_its_numbers_show(tmp_path):
    """Runs the full demo (about 15 minutes on 2 cores) into a fresh directory, never reusing an earlier
    run's output, then checks that each finding's verdict follows from the numbers and that the report
    states those numbers."""
    out = tmp_path / "demo"
    assert not out.exists()
    assert main(["demo", "--out", str(out)]) == 0
    res = json.loads((out / "report" / "tables" / "analysis.json").read_text())
    findings = {f["finding"]: f for f in res["paper_findings"]}
    page = html.unescape((out / "report" / "report.html").read_text())
    for f in findings.values():
        assert f["text"] in page and f["verdict"] in ("yes", "partly", "no")
    corr = findings["validation loss predicts downstream accuracy"]
    assert list(corr["numbers"]) == ["eval_finetune_top1"]  # the paper's metric decides; probes are listed
    rows = {r["metric"]: r for r in res["correlation"] if r["group"] == "all"}
    rho, (_, hi) = rows["eval_finetune_top1"]["spearman"], rows["eval_finetune_top1"]["spearman_ci"]
    strong, significant = rho <= -0.7, hi < 0
    assert corr["verdict"] == ("yes" if strong and significant else "partly" if strong or significant else "no")
    runs = pd.read_csv(out / "results.csv")
    assert runs["eval_finetune_top1"].max() > 0.3  # well above chance (0.1) somewhere on the grid
    over = findings["overfitting on small data"]["numbers"]
    assert f"{over['gap_ratio']:.1f}x" in findings["overfitting on small data"]["text"]
    gain = findings["more data helps larger models more"]["numbers"]["gain_by_model"]
    ordered = [gain[m["name"]] for m in res["models"] if m["name"] in gain]
    increasing = all(b > a for a, b in zip(ordered, ordered[1:]))
    assert (findings["more data helps larger models more"]["verdict"] == "yes") == increasing
