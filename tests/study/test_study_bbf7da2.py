"""A study directory written by bbf7da2 (tests/fixtures/bbf7da2/study/) is continued by the current code: the
study file still matches the directory, the run ids are the same, finished runs are not re-trained, and a run
whose summary and evaluation were lost finishes from its old checkpoint with the numbers the old code got."""

import json
import shutil
from pathlib import Path

import pandas as pd

from mimscale.cli import main
from mimscale.study.spec import load_study

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "bbf7da2" / "study"
IDS = {"22a845d97b", "5dc388ab45"}  # as bbf7da2 named the run directories


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_bbf7da2_study_directory_continues(tmp_path, capsys):
    study_dir = tmp_path / "tiny"
    shutil.copytree(FIXTURE / "dir", study_dir)
    study_file = FIXTURE / "study-file.yaml"
    assert {r.id for r in load_study(study_file).runs} == IDS
    runs = study_dir / "runs"
    before = {r: (runs / r / "metrics.jsonl").read_bytes() for r in IDS}
    old_summary = _json(runs / "5dc388ab45" / "summary.json")
    old_knn = _json(runs / "5dc388ab45" / "eval" / "knn.json")
    # Lose one run's summary, status and evaluation: it must finish from its bbf7da2 checkpoint.
    for name in ("summary.json", "status.json", "eval/knn.json"):
        (runs / "5dc388ab45" / name).unlink()

    assert main(["study", "run", str(study_file), "--out", str(study_dir), "--workers", "1", "--threads", "1"]) == 0
    assert {p.name for p in runs.iterdir()} == IDS  # no new run directory: the same ids
    new_summary = _json(runs / "5dc388ab45" / "summary.json")
    for key in ("final_val_loss", "best_val_loss", "best_val_step", "final_train_loss", "iters", "run_id"):
        assert new_summary[key] == old_summary[key], key
    assert _json(runs / "5dc388ab45" / "eval" / "knn.json")["metrics"] == old_knn["metrics"]
    # The finished run was not touched; the resumed one logged no new training step.
    assert (runs / "22a845d97b" / "metrics.jsonl").read_bytes() == before["22a845d97b"]
    steps = [json.loads(line)["step"] for line in (runs / "5dc388ab45" / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 12
    capsys.readouterr()
    assert main(["study", "status", str(study_dir)]) == 0
    status = capsys.readouterr().out
    assert status.count("done") >= 2 and "pending" not in status and "failed" not in status, status
    assert {ln.split()[0] for ln in status.splitlines()[3:]} == IDS  # shown under their old names
    # Reported: the results table finds both runs under the names bbf7da2 gave them.
    assert main(["study", "results", str(study_dir)]) == 0
    results = pd.read_csv(study_dir / "results.csv")
    assert set(results["run"]) == IDS and set(results["run_id"]) == IDS
    assert set(results["status"]) == {"done"} and results["val_loss"].notna().all()
    assert set(pd.read_csv(study_dir / "curves.csv")["run"]) == IDS
