"""Every shipped study file parses, expands to the intended grid and opens with the command that runs it."""

from functools import cache
from pathlib import Path

import pytest

from mimscale.evaluate.config import from_spec
from mimscale.study import load_study

STUDIES = sorted((Path(__file__).resolve().parents[2] / "src" / "mimscale" / "configs" / "studies").glob("*.yaml"))


@cache
def _load(path: Path):
    return load_study(path)  # the paper grid resolves 60 configs: once per test session is enough


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_shipped_study_parses(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith(("# mimscale study run studies/" + path.name, "# mimscale demo"))
    study = _load(path)
    assert study.name == path.stem and study.runs
    for run in study.runs[:1]:
        for spec in run.evals:  # every eval entry is a valid mimscale.evaluate config (the data is not here)
            from_spec(spec)


def test_paper_grid():
    study = _load(STUDIES[0].parent / "paper.yaml")
    assert len(study.runs) == 5 * 4 * 3
    cfg = {(r.axes["model.name"], r.axes["data.fraction"], r.axes["train.iters"]): r.cfg for r in study.runs}
    c = cfg[("swinv2-g", 0.1, 500000)]
    assert (c.train.batch_size, c.data.img_size, c.data.mask_patch_size) == (2048, 192, 32)
    assert c.train.schedule == "step"
    assert c.train.warmup_iters == -1 and c.train.warmup_fraction == 0.0125  # the official 10 of 800 epochs
    assert c.train.decay_position_bias and not c.data.jpeg_draft
    assert c.data.source == "folder:/data/imagenet/train"
    assert [e["task"] for e in study.evals] == ["finetune"]


def test_cpu_small_grid():
    study = _load(STUDIES[0].parent / "cpu-small.yaml")
    assert len(study.runs) == 2 * 3 * 2
    assert {(r.cfg.train.iters, r.cfg.train.warmup_iters) for r in study.runs} == {(250, 25), (1000, 50)}
    assert all(r.cfg.data.source.startswith("shapes:") for r in study.runs)
