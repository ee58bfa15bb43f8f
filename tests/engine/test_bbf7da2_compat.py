"""Checkpoints written by commit bbf7da2 (the two separate training engines) still resume, and the new engine
finishes them with exactly the numbers the old code got (tests/fixtures/bbf7da2/README.md)."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from mimscale import rundir as R
from mimscale.config import load_config
from mimscale.train import pretrain

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bbf7da2"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def _maker():
    spec = importlib.util.spec_from_file_location("make_bbf7da2_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_an_old_pretraining_checkpoint_resumes_to_the_old_numbers(tmp_path, one_thread):
    run_dir = tmp_path / "pretrain"
    shutil.copytree(FIXTURES / "pretrain", run_dir)
    old_provenance = (run_dir / "provenance.json").read_text()
    summary = pretrain(load_config(None, [*_maker().PRETRAIN, f"run_dir={run_dir}"]))
    # Resumed, not started over: a fresh run writes its own provenance.json.
    assert (run_dir / "provenance.json").read_text() == old_provenance
    expected = EXPECTED["pretrain"]
    assert {k: summary[k] for k in expected["summary"]} == expected["summary"]
    losses = {f"{r['split']}/{r['name']}@{r['step']}": r["value"] for r in R.RunDir(run_dir).read_metrics()
              if r["name"] == R.LOSS}
    assert losses == expected["losses"]
    assert [s for s, _ in R.RunDir(run_dir).list_checkpoints()] == [6]


def test_an_old_finetuning_state_resumes_to_the_old_numbers(tmp_path, one_thread, capsys):
    state = tmp_path / "finetune.state.pt"
    shutil.copy(FIXTURES / "finetune.state.pt", state)
    # bbf7da2 scaled warmup_lr and min_lr by each group's layer scale and kept the partial last batch; since
    # schema 7 those are no longer the defaults, so the resumed fine-tuning names them.
    result = _maker().finetune_run(state, ("lr_floor_rule=scaled", "drop_last=false"))
    assert "resuming at step 6" in capsys.readouterr().err
    assert result["metrics"] == EXPECTED["finetune"]["metrics"]
    assert result["history"] == EXPECTED["finetune"]["history"]
