"""benchmarks/demo_matrix.py on tiny fake demo directories: README gets the table and one sentence, docs/DEMO.md
the details with every metric once and readable lines, and a resumed call's time is never the demo's time."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "demo_matrix.py"
MODELS = ["vit-cpu-s", "vit-cpu-m", "vit-cpu-l"]
OVERFIT_TEXT = (
    "Length rule, held-out loss at 2,000 it minus the best shorter length (500 it; * = above the tolerance "
    "0.00091): 100 images: vit-cpu-s -0.1166, vit-cpu-m -0.0253, vit-cpu-l +0.0016*; 1,000 images: vit-cpu-s "
    "-0.1605, vit-cpu-m -0.0564, vit-cpu-l -0.0433. 1 rise(s) on data smaller than 1,000 images, growing with "
    "model size (rank correlation +1.00 at 100 images); none on the largest size. eval_finetune_top1 fell with "
    "the rise in 0 of 1 flagged setting(s). Curves: vit-cpu-l on 100 images, 2,000 it: held-out loss changed by "
    "-0.0135 over the last 40% of training and ends +0.0040 above its minimum (stops improving at tolerance "
    "0.00091), while the training-probe loss fell by 0.0236 (keeps falling).")
GAIN_TEXT = ("At 2,000 it, on the data sizes every compared model has (100, 1,000 images), held-out loss at the "
             "smallest minus at the largest: vit-cpu-s +0.0617, vit-cpu-m +0.1509, vit-cpu-l +0.1608 (increases "
             "with model size). At 500 it (on 100, 1,000): vit-cpu-s +0.0178, vit-cpu-m +0.1198, vit-cpu-l +0.1159.")


@pytest.fixture(scope="module")
def dm():
    spec = importlib.util.spec_from_file_location("demo_matrix_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _corr(metric: str, overall: float, per_model: list[float]) -> list[dict]:
    rows = [{"group": "all", "metric": metric, "expected_sign": "negative", "n": 6, "spearman": overall,
             "spearman_ci": [overall - 0.15, overall + 0.2], "pearson": overall + 0.05}]
    return rows + [{"group": m, "metric": metric, "expected_sign": "negative", "n": 2, "spearman": v,
                    "spearman_ci": [None, None], "pearson": v} for m, v in zip(MODELS, per_model)]


def fake_demo(root: Path, name: str, *, fresh, seconds=423.0, seed=0, final_equals_top1=True) -> Path:
    """A demo directory with what demo_matrix reads: demo.json, results.csv, report/tables/analysis.json."""
    d = root / name
    (d / "report" / "tables").mkdir(parents=True)
    record = {"seed": seed, "data": "shapes", "backbone": "vit", "quick": False, "cpus": 2, "seconds": seconds,
              "finished": "2026-12-03 10:00:00"}
    if fresh is not None:
        record["fresh"] = fresh
    (d / "demo.json").write_text(json.dumps(record))
    top1 = [0.169, 0.25, 0.30, 0.35, 0.41, 0.479]
    final = top1 if final_equals_top1 else [*top1[:-1], 0.47]
    pd.DataFrame({"run": list("abcdef"), "eval_finetune_top1": top1, "eval_finetune_final_top1": final,
                  "eval_knn_top1": [0.106, 0.11, 0.12, 0.13, 0.14, 0.157],
                  "eval_linear_top1": [0.114, 0.15, 0.2, 0.25, 0.3, 0.32]}).to_csv(d / "results.csv", index=False)
    final_rho = -0.75 if final_equals_top1 else -0.74
    correlation = (_corr("eval_finetune_top1", -0.75, [-0.71, -0.67, -0.60])
                   + _corr("eval_finetune_final_top1", final_rho, [-0.71, -0.67, -0.60])
                   + _corr("eval_knn_top1", -0.65, [-0.81, -0.59, -0.93]))
    findings = [
        {"finding": "overfitting on small data", "verdict": "partly", "text": OVERFIT_TEXT},
        {"finding": "more data helps larger models more", "verdict": "yes", "text": GAIN_TEXT},
        {"finding": "validation loss predicts downstream accuracy", "verdict": "yes",
         "text": "eval_finetune_top1: Spearman -0.75 (...) (target: Spearman <= -0.7 over all runs, with its 95% "
                 "interval below 0, for eval_finetune_top1).",
         "numbers": {"eval_finetune_top1": -0.75}}]
    (d / "report" / "tables" / "analysis.json").write_text(
        json.dumps({"paper_findings": findings, "correlation": correlation}))
    return d


def test_table_never_shows_a_resumed_time_as_the_demos(dm, tmp_path):
    demos = [dm.load(fake_demo(tmp_path, "resumed", fresh=False)),
             dm.load(fake_demo(tmp_path, "fresh", fresh=True, seconds=1274.0, seed=1)),
             dm.load(fake_demo(tmp_path, "old", fresh=None, seconds=800.0, seed=2))]
    rows = dm.matrix(demos).splitlines()[2:]
    assert rows[0] == ("| vit, shapes, seed 0 | PARTLY | YES | YES | -0.75 | 16.9-47.9% | 10.6-15.7% | 11.4-32.0% "
                       "| (resumed) |")
    assert rows[1].endswith("| 21 min 14 s |")
    assert rows[2].endswith("| (not recorded) |")
    assert "7 min 03 s" not in rows[0] and "13 min 20 s" not in rows[2]
    words = dm.details(demos[0])
    assert "evaluated runs pre-trained by an earlier call in 7 min 03 s, which is not the demo's time" in words


def test_details_show_an_equal_metric_once(dm, tmp_path):
    text = dm.details(dm.load(fake_demo(tmp_path, "demo", fresh=False)))
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| metric |")
    assert rows[1] == ("| **eval_finetune_top1** (= eval_finetune_final_top1) | -0.75 (-0.90 to -0.55) | -0.70 | 6 | "
                       "vit-cpu-s -0.71, vit-cpu-m -0.67, vit-cpu-l -0.60 | vit-cpu-l (least negative) |")
    assert rows[2].startswith("| eval_knn_top1 | -0.65 ") and rows[2].endswith("| vit-cpu-m (least negative) |")
    assert len(rows) == 3  # header, top1 (standing for final_top1 too), kNN
    assert "Shown once: eval_finetune_final_top1 equals eval_finetune_top1 on every run" in text
    assert "(target: Spearman <= -0.7 over all runs, with its 95% interval below 0, for eval_finetune_top1)" in text


def test_details_keep_a_metric_that_differs_on_one_run(dm, tmp_path):
    text = dm.details(dm.load(fake_demo(tmp_path, "demo", fresh=True, final_equals_top1=False)))
    rows = [line for line in text.splitlines() if line.startswith("| eval") or line.startswith("| **")]
    assert [r.split(" | ")[0] for r in rows] == ["| **eval_finetune_top1**", "| eval_finetune_final_top1",
                                                  "| eval_knn_top1"]
    assert "Shown once" not in text


def test_findings_become_lists_with_readable_lines(dm, tmp_path):
    text = dm.details(dm.load(fake_demo(tmp_path, "demo", fresh=True)))
    lines = text.splitlines()
    assert max(len(line) for line in lines) < 300
    head = ("- Length rule, held-out loss at 2,000 it minus the best shorter length (500 it; * = above the "
            "tolerance 0.00091):")
    i = lines.index(head)
    assert lines[i + 1:i + 3] == ["  - 100 images: vit-cpu-s -0.1166, vit-cpu-m -0.0253, vit-cpu-l +0.0016*",
                                  "  - 1,000 images: vit-cpu-s -0.1605, vit-cpu-m -0.0564, vit-cpu-l -0.0433."]
    assert lines[i + 3] == ("- 1 rise(s) on data smaller than 1,000 images, growing with model size (rank "
                            "correlation +1.00 at 100 images); none on the largest size.")
    assert lines[i + 4] == "- eval_finetune_top1 fell with the rise in 0 of 1 flagged setting(s)."
    assert lines[i + 5].startswith("- Curves: vit-cpu-l on 100 images, 2,000 it: held-out loss changed by -0.0135")
    assert "**More data helps larger models more: YES**" in lines
    assert "- At 500 it (on 100, 1,000): vit-cpu-s +0.0178, vit-cpu-m +0.1198, vit-cpu-l +0.1159." in lines


def test_write_puts_the_table_in_readme_and_the_details_in_demo_md(dm, tmp_path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    for rel, tag in [("README.md", "demo-numbers"), ("BENCHMARKS.md", "demo-matrix")]:
        (root / rel).write_text(f"before\n<!-- {tag} -->\nold\n<!-- /{tag} -->\nafter\n")
    (root / "docs" / "DEMO.md").write_text("before\n<!-- demo-details -->\n<!-- /demo-details -->\nafter\n")  # empty
    demos = [dm.load(fake_demo(tmp_path, "demo", fresh=False)),
             dm.load(fake_demo(tmp_path, "demo-seed1", fresh=True, seconds=1274.0, seed=1))]
    dm.write(demos, root)
    readme = (root / "README.md").read_text()
    table = dm.matrix(demos)
    assert readme == f"before\n<!-- demo-numbers -->\n{table}\n\n{dm.README_SENTENCE}\n<!-- /demo-numbers -->\nafter\n"
    assert "Length rule" not in readme and "Spearman -0.65" not in readme
    assert (root / "BENCHMARKS.md").read_text() == f"before\n<!-- demo-matrix -->\n{table}\n<!-- /demo-matrix -->\nafter\n"
    demo_md = (root / "docs" / "DEMO.md").read_text()
    assert demo_md.startswith("before\n<!-- demo-details -->\n### vit, shapes, seed 0\n")
    assert "\n### vit, shapes, seed 1\n" in demo_md and demo_md.endswith("\n<!-- /demo-details -->\nafter\n")
    assert demo_md.count("<!-- demo-details -->") == 1
    assert max(len(line) for line in readme.splitlines() if not line.startswith("|")) <= 110


def test_write_refuses_a_file_without_markers(dm, tmp_path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    for rel in ["README.md", "docs/DEMO.md", "BENCHMARKS.md"]:
        (root / rel).write_text("no markers\n")
    with pytest.raises(SystemExit, match="no <!-- demo-numbers -->"):
        dm.write([dm.load(fake_demo(tmp_path, "demo", fresh=True))], root)
