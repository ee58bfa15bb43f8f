"""Run ids and evaluation identities do not change: every entry recorded with the code of bbf7da2
(tests/fixtures/run_ids/record.py) is recomputed with the current code. A changed id would orphan every run and
study directory written before it."""

import hashlib
import json
from functools import cache
from pathlib import Path

import pytest
import yaml

from mimscale.config import load_config, run_id
from mimscale.demo import variant_study
from mimscale.evaluate.config import identity as eval_identity
from mimscale.evaluate.config import load_eval_config, spec_identity
from mimscale.study.spec import load_study, parse_study

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "run_ids"
CONFIGS = Path(__file__).resolve().parents[1] / "src" / "mimscale" / "configs"
# bbf7da2 shipped one pre-training file per Swin V2 size; one file with the size as an override replaces them.
PAPER_SIZES = {f"pretrain/swinv2-{s}.yaml": f"swinv2-{s}" for s in "sblhg"}
# Evaluations whose identity changed on purpose: the paper studies' fine-tuning now has the official global
# batch, precision and loader workers (issue 25; tests/study/test_paper_finetune_recipe.py). Their pre-training
# run ids are unchanged.
RECIPE_FIXED = {"paper.yaml": {"finetune"}, "paper-shared.yaml": {"finetune"}}
# Defaults changed on purpose (schema 7, issue 25): fine-tuning's per-group LR rule and its partial last batch.
# Such a key is declared with the value it replaced (``config_keys.Key.before``), so a recorded identity is
# reproduced exactly by naming that value: a result written before still means what it computed, and a request
# at the new default is computed anew.
FORMER_DEFAULTS = {"lr_floor_rule": "scaled", "drop_last": False}
# Shipped config values changed on purpose: finetune/finetune.yaml is the official recipe (fp32 as the
# official forward, full JPEG decodes; tests/study/test_paper_finetune_recipe.py).
FORMER_CONFIG_VALUES = {"finetune/finetune.yaml": {"precision": "bf16", "jpeg_draft": True}}
RECORDED = json.loads((FIXTURES / "bbf7da2.json").read_text())


def _former(values: dict) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


def _digest(identity: dict) -> str:
    """As record.py stores an evaluation identity: the hash of its sorted JSON."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _config(name: str) -> tuple[Path, list[str]]:
    """A config named as bbf7da2 shipped it -> the file that replaces it now, and the overrides that select it."""
    if name in PAPER_SIZES:
        return CONFIGS / "pretrain" / "swinv2-paper.yaml", [f"model.name={PAPER_SIZES[name]}"]
    return CONFIGS / name, []


def _study_file(name: str) -> Path:
    return CONFIGS / "studies" / name


@pytest.mark.parametrize("entry", RECORDED["pretrain"], ids=lambda e: f"{e['config']}{e['overrides']}")
def test_pretrain_run_id_unchanged(entry):
    path, selected = _config(entry["config"])
    assert run_id(load_config(path, [*selected, *entry["overrides"]])) == entry["run_id"]


def test_eval_identities_unchanged():
    changed = 0
    for entry in RECORDED["eval"]:
        path, selected = _config(entry["config"])
        former = _former({**FORMER_DEFAULTS, **FORMER_CONFIG_VALUES.get(entry["config"], {})})
        cfg = load_eval_config(path, [*selected, *entry["overrides"]])
        got = _digest(eval_identity(load_eval_config(path, [*selected, *former, *entry["overrides"]])))
        assert got == entry["identity"], entry
        now = _digest(eval_identity(cfg))
        if cfg.task == "finetune":  # the new defaults are in every fine-tuning identity
            assert now != entry["identity"], entry
            changed += 1
        elif entry["config"] not in FORMER_CONFIG_VALUES:  # the other tasks read none of the changed defaults
            assert now == entry["identity"], entry
    assert changed == 8 * 6  # every fine-tuning request: 8 config files x 6 override sets


@cache
def _study(key: str):
    name, _, variant = key.partition(":")
    if not variant:
        return load_study(_study_file(name))
    data, seed = variant.split(":")
    return parse_study(variant_study(yaml.safe_load(_study_file(name).read_text()), data, int(seed)), key)


@pytest.mark.parametrize("key", sorted(RECORDED["studies"]))
def test_study_run_ids_unchanged(key):
    study, recorded = _study(key), RECORDED["studies"][key]
    assert {json.dumps(r.axes, sort_keys=True): r.id for r in study.runs} == recorded["runs"]
    evals = {e["name"]: _digest(spec_identity(e)) for e in study.evals}
    former = {e["name"]: _digest(spec_identity({**FORMER_DEFAULTS, **e})) for e in study.evals}
    changed = RECIPE_FIXED.get(key.partition(":")[0], set())
    assert {k: v for k, v in former.items() if k not in changed} == {
        k: v for k, v in recorded["evals"].items() if k not in changed}
    assert all(evals[k] != recorded["evals"][k] for k in changed)  # the fix took effect
    for e in study.evals:  # a fine-tuning at the new defaults is computed anew; the other tasks keep their results
        assert (evals[e["name"]] == recorded["evals"][e["name"]]) == (e.get("task") != "finetune"), e["name"]
